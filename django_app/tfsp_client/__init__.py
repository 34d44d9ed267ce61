"""TF Serving client for the web tier (no Django, no TensorFlow).

``config`` (ClientConfig), ``results`` (what calls return), ``errors`` (typed errors with user
messages), ``policy`` (routing, ejection, retry budget), ``prober`` (re-admission),
``grpc_transport`` / ``rest_transport`` (one call on one host), ``client`` (TFServingClient).
"""

from tfsp_client.client import TFServingClient
from tfsp_client.config import ClientConfig, ConfigError
from tfsp_client.errors import (
    ModelNotFound,
    ServingError,
    UnknownVersionLabel,
    UpstreamError,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from tfsp_client.results import (
    Classification,
    HostHealth,
    HostStatus,
    ModelMetadata,
    Prediction,
    Regression,
    Signature,
    TensorSpec,
    VersionStatus,
)

__all__ = [
    "Classification",
    "ClientConfig",
    "ConfigError",
    "HostHealth",
    "HostStatus",
    "ModelMetadata",
    "ModelNotFound",
    "Prediction",
    "Regression",
    "ServingError",
    "Signature",
    "TFServingClient",
    "TensorSpec",
    "UnknownVersionLabel",
    "UpstreamError",
    "UpstreamRejected",
    "UpstreamTimeout",
    "UpstreamUnavailable",
    "VersionStatus",
]
