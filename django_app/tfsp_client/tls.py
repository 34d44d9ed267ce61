"""Mutual TLS on the gRPC channels: the PEM files a client trusts and presents, read and checked.

TF Serving started with ``--ssl_config_file`` and ``client_verify: true`` serves only clients that
present a certificate of its CA, and speaks TLS only on its gRPC port. ``TlsFiles`` names the three
files; ``read`` returns their contents or raises ``ConfigError`` naming the file at fault, so that a
missing, unreadable or wrong file stops the app at start-up with one line, not at a request.
"""

from __future__ import annotations

from dataclasses import dataclass

from tfsp_client.config import ConfigError

#: What each file must hold (a PEM block of that kind).
PEM_MARKERS = {
    "tls_ca_file": ("-----BEGIN CERTIFICATE-----", "a PEM certificate"),
    "tls_cert_file": ("-----BEGIN CERTIFICATE-----", "a PEM certificate"),
    "tls_key_file": ("PRIVATE KEY-----", "a PEM private key"),
}


@dataclass(frozen=True)
class TlsPem:
    """The contents of the three files, as ``grpc.ssl_channel_credentials`` takes them."""

    ca: bytes
    cert: bytes
    key: bytes


@dataclass(frozen=True)
class TlsFiles:
    """Paths of the CA certificate (trusted for servers), the client certificate and its key."""

    ca_file: str
    cert_file: str
    key_file: str

    @classmethod
    def from_paths(cls, ca_file: str, cert_file: str, key_file: str) -> TlsFiles | None:
        """None when no path is given (plain gRPC); ConfigError when only some are."""
        paths = {"tls_ca_file": ca_file, "tls_cert_file": cert_file, "tls_key_file": key_file}
        if not any(paths.values()):
            return None
        for field, path in paths.items():
            if not path:
                raise ConfigError(
                    field, "must be set too: mutual TLS needs the CA, certificate and key files"
                )
        return cls(ca_file, cert_file, key_file)

    def read(self) -> TlsPem:
        """The three files' contents; ConfigError naming the first that cannot be read or is not PEM."""
        contents = {}
        for field, path in (
            ("tls_ca_file", self.ca_file),
            ("tls_cert_file", self.cert_file),
            ("tls_key_file", self.key_file),
        ):
            try:
                with open(path, "rb") as file:
                    data = file.read()
            except OSError as error:
                raise ConfigError(field, f"cannot read {path}: {error.strerror}") from None
            marker, kind = PEM_MARKERS[field]
            if marker.encode() not in data:
                raise ConfigError(field, f"{path} does not hold {kind}")
            contents[field] = data
        return TlsPem(
            ca=contents["tls_ca_file"], cert=contents["tls_cert_file"], key=contents["tls_key_file"]
        )
