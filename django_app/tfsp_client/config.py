"""``ClientConfig``: where TF Serving is, how to talk to it and how to route around a failing host."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tfsp_client.tls import TlsFiles

PROTOCOLS = ("grpc", "rest")
DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024


class ConfigError(ValueError):
    """A configuration mistake; ``field`` names the ``ClientConfig`` field at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def split_target(target: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) into its parts; ConfigError when it is not one."""
    host, sep, port = target.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536 or "/" in host:
        raise ConfigError("targets", f"{target!r} is not host:port")
    return host, int(port)


@dataclass(frozen=True)
class ClientConfig:
    """Where TF Serving is and how to talk to it.

    ``timeout_seconds`` bounds a whole call, re-issues included. ``attempt_timeout_seconds`` bounds
    one attempt on one host while another host is left to try; the last host gets all the time left.
    Admitted hosts take turns of ``calls_per_host`` consecutive calls (1: strict round-robin).
    A host that fails ``eject_after_failures`` times in a row is left out for ``ejection_seconds``
    (doubling while it stays sick, up to ``max_ejection_seconds``) and comes back when a probe
    answers within ``probe_timeout_seconds``. ``status_timeout_seconds`` bounds each host's answer
    to a status query (/readyz, /status). ``tls`` (``tfsp_client.tls.TlsFiles``): gRPC over mutual
    TLS with those files; None for plain gRPC. REST has no TLS in TF Serving, so not with ``rest``.
    """

    targets: tuple[str, ...]
    model_name: str = "calculator"
    protocol: str = "grpc"
    rest_targets: tuple[str, ...] = ()
    timeout_seconds: float = 2.0
    attempt_timeout_seconds: float = 0.25
    calls_per_host: int = 16
    eject_after_failures: int = 2
    ejection_seconds: float = 2.0
    max_ejection_seconds: float = 10.0
    probe_timeout_seconds: float = 0.25
    status_timeout_seconds: float = 0.5
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    tls: TlsFiles | None = None

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ConfigError("protocol", f"protocol must be one of {PROTOCOLS}, not {self.protocol!r}")
        if self.tls is not None and self.protocol == "rest":
            raise ConfigError(
                "protocol", "rest cannot be used with mutual TLS: TF Serving's REST API has no TLS"
            )
        field = "targets" if self.protocol == "grpc" else "rest_targets"
        if not self.hosts:
            raise ConfigError(field, f"no TF Serving {self.protocol} targets configured")
        for target in self.hosts:
            try:
                split_target(target)
            except ConfigError as error:
                raise ConfigError(field, str(error)) from None
        duplicates = sorted({t for t in self.hosts if self.hosts.count(t) > 1})
        if duplicates:
            raise ConfigError(field, f"lists {', '.join(duplicates)} more than once")
        for name in (
            "timeout_seconds",
            "attempt_timeout_seconds",
            "ejection_seconds",
            "max_ejection_seconds",
            "probe_timeout_seconds",
            "status_timeout_seconds",
        ):
            if not getattr(self, name) > 0:
                raise ConfigError(name, f"{name} must be positive")
        if self.calls_per_host < 1:
            raise ConfigError("calls_per_host", "calls_per_host must be at least 1")
        if self.eject_after_failures < 1:
            raise ConfigError("eject_after_failures", "eject_after_failures must be at least 1")

    @property
    def hosts(self) -> tuple[str, ...]:
        """The host:port list for the selected protocol."""
        return self.targets if self.protocol == "grpc" else self.rest_targets
