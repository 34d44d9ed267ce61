"""TF Serving's REST API through one urllib3 pool per host (keep-alive), with urllib3's timeouts.

urllib3's ``Retry`` retries on the same host, which is no help against a hung or cut-off host; the
re-issue on another host is the client's (``policy``), as for gRPC. Each attempt gets a
``urllib3.Timeout`` for connecting and for reading, so a black-holed host (no SYN-ACK) or a frozen
one (no answer) costs one attempt's time, not the call's.
"""

from __future__ import annotations

import json
from urllib.parse import quote

import urllib3

from tfsp_client.config import ClientConfig
from tfsp_client.errors import (
    ModelNotFound,
    ServingError,
    UnknownVersionLabel,
    UpstreamError,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from tfsp_client.results import Signature, TensorSpec, VersionStatus
from tfsp_client.tensors import pack_float32
from tfsp_client.transport import Transport

_HTTP_ERRORS: dict[int, type[ServingError]] = {
    400: UpstreamRejected,
    404: ModelNotFound,
    429: UpstreamUnavailable,
    503: UpstreamUnavailable,
    504: UpstreamTimeout,
}


def _labelled(verb: str, version_label: str | None) -> str:
    """``:predict``, or ``/labels/<label>:predict`` for the version a label points at."""
    return verb if version_label is None else f"/labels/{quote(version_label, safe='')}{verb}"


class RestTransport(Transport):
    """TF Serving's REST API through one urllib3 connection pool (keep-alive) per process."""

    def __init__(self, config: ClientConfig) -> None:
        self._config = config
        self._pool = urllib3.PoolManager(
            num_pools=max(4, len(config.rest_targets)), maxsize=16, retries=False
        )

    def _request(self, host: str, timeout: float, method: str, path: str, body: dict | None = None) -> dict:
        url = f"http://{host}/v1/models/{self._config.model_name}{path}"
        payload = json.dumps(body).encode() if body is not None else None
        if payload is not None and len(payload) > self._config.max_message_bytes:
            raise UpstreamRejected(f"request of {len(payload)} bytes exceeds the message size limit", host)
        try:
            response = self._pool.request(
                method,
                url,
                body=payload,
                headers={"Content-Type": "application/json"},
                timeout=urllib3.Timeout(connect=timeout, read=timeout, total=timeout),
                preload_content=True,
            )
        except urllib3.exceptions.NewConnectionError as error:  # a subclass of ConnectTimeoutError
            raise UpstreamUnavailable(str(error), host, sent=False) from None
        except urllib3.exceptions.TimeoutError as error:
            raise UpstreamTimeout(str(error), host) from None
        except urllib3.exceptions.HTTPError as error:
            raise UpstreamUnavailable(str(error), host) from None
        try:
            data = json.loads(response.data or b"{}")
        except ValueError:
            data = {"error": response.data[:200].decode(errors="replace")}
        if response.status != 200:
            message = str(data.get("error", ""))
            error_class = _HTTP_ERRORS.get(response.status, UpstreamError)
            if response.status == 400 and UnknownVersionLabel.marker in message:
                error_class = UnknownVersionLabel
            raise error_class(f"HTTP {response.status}: {message}", host)
        return data

    def predict(self, host, timeout, signature, inputs, output, version_label=None):
        for values in inputs.values():
            pack_float32(values)
        data = self._request(
            host,
            timeout,
            "POST",
            _labelled(":predict", version_label),
            {"signature_name": signature, "inputs": inputs},
        )
        outputs = data.get("outputs")
        if isinstance(outputs, dict):
            outputs = outputs.get(output)
        if not isinstance(outputs, list):
            raise UpstreamError(f"response has no output {output!r}", host)
        return [float(v) for v in outputs], None

    def classify(self, host, timeout, signature, examples, version_label=None):
        data = self._request(
            host,
            timeout,
            "POST",
            _labelled(":classify", version_label),
            {"signature_name": signature, "examples": examples},
        )
        return [
            [(str(label), float(score)) for label, score in item] for item in data.get("results", [])
        ], None

    def regress(self, host, timeout, signature, examples, version_label=None):
        data = self._request(
            host,
            timeout,
            "POST",
            _labelled(":regress", version_label),
            {"signature_name": signature, "examples": examples},
        )
        return [float(v) for v in data.get("results", [])], None

    def model_status(self, host, timeout):
        data = self._request(host, timeout, "GET", "")
        return [
            VersionStatus(
                version=int(s["version"]),
                state=s.get("state", "UNKNOWN"),
                error_code=s.get("status", {}).get("error_code", "OK"),
                error_message=s.get("status", {}).get("error_message", ""),
            )
            for s in data.get("model_version_status", [])
        ]

    def metadata(self, host, timeout):
        data = self._request(host, timeout, "GET", "/metadata")
        version = data.get("model_spec", {}).get("version")
        defs = data.get("metadata", {}).get("signature_def", {}).get("signature_def", {})

        def spec(info: dict) -> TensorSpec:
            dims = info.get("tensor_shape", {}).get("dim", [])
            return TensorSpec(dtype=info.get("dtype", ""), shape=[int(d.get("size", -1)) for d in dims])

        signatures = {
            name: Signature(
                name=name,
                method=sig.get("method_name", ""),
                inputs={k: spec(v) for k, v in sorted(sig.get("inputs", {}).items())},
                outputs={k: spec(v) for k, v in sorted(sig.get("outputs", {}).items())},
            )
            for name, sig in sorted(defs.items())
            if not name.startswith("__")
        }
        return (int(version) if version else None), signatures

    def probe(self, host, timeout):
        url = f"http://{host}/v1/models/{self._config.model_name}"
        try:
            self._pool.request("GET", url, timeout=urllib3.Timeout(total=timeout), preload_content=True)
        except urllib3.exceptions.TimeoutError as error:
            raise UpstreamTimeout(str(error), host) from None
        except urllib3.exceptions.HTTPError as error:
            raise UpstreamUnavailable(str(error), host) from None

    def close(self) -> None:
        self._pool.clear()
