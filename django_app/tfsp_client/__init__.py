"""TF Serving client for the web tier (no Django, no TensorFlow): see ``tfsp_client.client``."""

from tfsp_client.client import (
    Classification,
    ClientConfig,
    HostStatus,
    ModelMetadata,
    Prediction,
    Regression,
    Signature,
    TensorSpec,
    TFServingClient,
    VersionStatus,
)
from tfsp_client.errors import (
    ModelNotFound,
    ServingError,
    UpstreamError,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)

__all__ = [
    "Classification",
    "ClientConfig",
    "HostStatus",
    "ModelMetadata",
    "ModelNotFound",
    "Prediction",
    "Regression",
    "ServingError",
    "Signature",
    "TFServingClient",
    "TensorSpec",
    "UpstreamError",
    "UpstreamRejected",
    "UpstreamTimeout",
    "UpstreamUnavailable",
    "VersionStatus",
]
