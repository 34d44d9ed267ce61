"""The protocol-specific side of the client: one call on one host, within the seconds given.

A transport never chooses a host and never retries on another one (``policy`` and ``client`` do):
it turns each failure into the typed errors of ``tfsp_client.errors``, where UpstreamUnavailable and
UpstreamTimeout mean "this host gave no answer" and every other error is an answer.
``version_label`` (None: the latest version) asks for the version a TF Serving version label
points at; a host without the label raises ``UnknownVersionLabel``.
"""

from __future__ import annotations

from tfsp_client.results import Signature, VersionStatus


class Transport:
    """Protocol-specific calls; each method takes the host and the seconds it may take."""

    def predict(
        self,
        host: str,
        timeout: float,
        signature: str,
        inputs: dict[str, list[float]],
        output: str,
        version_label: str | None = None,
    ):
        raise NotImplementedError

    def classify(
        self,
        host: str,
        timeout: float,
        signature: str,
        examples: list[dict[str, float]],
        version_label: str | None = None,
    ):
        raise NotImplementedError

    def regress(
        self,
        host: str,
        timeout: float,
        signature: str,
        examples: list[dict[str, float]],
        version_label: str | None = None,
    ):
        raise NotImplementedError

    def model_status(self, host: str, timeout: float) -> list[VersionStatus]:
        raise NotImplementedError

    def metadata(self, host: str, timeout: float) -> tuple[int | None, dict[str, Signature]]:
        raise NotImplementedError

    def probe(self, host: str, timeout: float) -> None:
        """Return when the host answers at all (its health service, or any answer); raise otherwise."""
        raise NotImplementedError

    def close(self) -> None:
        """Release connections."""
