"""``TFServingClient``: the calls the web tier makes, routed around hosts that do not answer.

One client per process, reused by every request: it holds one gRPC channel (or one HTTP pool) per
TF Serving host for its whole life. A call goes to the next admitted host (``policy``) with a short
per-attempt deadline; when that host does not answer in time or cannot be reached, the call is
re-issued at once on the next host, within the call's overall deadline (the last host tried gets
all the time left). A host that keeps failing is ejected for a while and re-admitted by a
background probe (``prober``). Failures surface as the typed errors of ``tfsp_client.errors``.

Predict, Classify and Regress may ask for a TF Serving version label (a release's "stable" or
"canary"). A host that does not know the label (not yet set up for the release) answers
INVALID_ARGUMENT; the call moves on to the next host as after no answer, but the host is not
counted as failing. ``shadow_*`` calls are single attempts for background comparisons: one host,
one attempt's time, and no trace in the routing state.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from tfsp_client.config import ClientConfig
from tfsp_client.errors import ServingError, UnknownVersionLabel, UpstreamTimeout, UpstreamUnavailable
from tfsp_client.policy import HostPool
from tfsp_client.prober import Prober
from tfsp_client.results import (
    Answer,
    Classification,
    HostHealth,
    HostStatus,
    ModelMetadata,
    Prediction,
    Regression,
)
from tfsp_client.transport import Transport

T = TypeVar("T")
logger = logging.getLogger(__name__)

#: Errors that mean "this host gave no answer": the call moves on to another host.
NO_ANSWER = (UpstreamUnavailable, UpstreamTimeout)


def make_transport(config: ClientConfig) -> Transport:
    """The transport of the configured protocol (imported lazily: each pulls its own libraries)."""
    if config.protocol == "grpc":
        from tfsp_client.grpc_transport import GrpcTransport

        return GrpcTransport(config)
    from tfsp_client.rest_transport import RestTransport

    return RestTransport(config)


class TFServingClient:
    """Predict, Classify, Regress, metadata and status, with failover, ejection and a deadline.

    ``on_error(host, kind)`` hears of every attempt that got no answer; ``on_ejection(host,
    ejected)`` of every change of a host's ejection (for metrics). ``clock`` is for tests.
    """

    def __init__(
        self,
        config: ClientConfig,
        *,
        transport: Transport | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_error: Callable[[str, str], None] | None = None,
        on_ejection: Callable[[str, bool], None] | None = None,
    ) -> None:
        self.config = config
        self._clock = clock
        self._on_error = on_error
        self._on_ejection = on_ejection
        self._pool = HostPool(
            config.hosts,
            eject_after=config.eject_after_failures,
            base_seconds=config.ejection_seconds,
            max_seconds=config.max_ejection_seconds,
            calls_per_turn=config.calls_per_host,
            clock=clock,
        )
        self._transport = transport or make_transport(config)
        self.prober = Prober(self._pool, self._transport.probe, config.probe_timeout_seconds, on_ejection)

    def label(self, host: str) -> str:
        """The public name of a host ("serving host 1")."""
        return self._pool.label(host)

    def _with_failover(self, call: Callable[[str, float], T]) -> tuple[T, Answer]:
        """Run ``call(host, seconds)`` on the next host; on no answer, at once on the next one."""
        started = self._clock()
        deadline = started + self.config.timeout_seconds
        hosts = self._pool.order()
        last_error: ServingError | None = None
        for index, host in enumerate(hosts):
            left = deadline - self._clock()
            if left <= 0 or (index > 0 and not self._pool.may_reissue()):
                break
            try:
                result = call(
                    host,
                    left
                    if self._worth_all(host, hosts[index + 1 :])
                    else min(left, self.config.attempt_timeout_seconds),
                )
            except UnknownVersionLabel as error:
                # An answer (the host is alive and serves other labels), but not one for this call.
                last_error = error
                self._pool.succeeded(host)
                if self._on_error is not None:
                    self._on_error(host, type(error).__name__)
                continue
            except NO_ANSWER as error:
                last_error = error
                self._failed(host, error)
                continue
            except ServingError:
                self._pool.succeeded(host)  # an answer, if not a happy one: the host is alive
                raise
            self._pool.succeeded(host)
            return result, Answer(host=host, elapsed_ms=(self._clock() - started) * 1000)
        if last_error is None:
            raise UpstreamTimeout("deadline passed before any host was tried", hosts[0])
        raise last_error

    def _single_attempt(self, call: Callable[[str, float], T]) -> tuple[T, Answer]:
        """Run ``call`` once on the host the next call would try, within one attempt's time.

        For shadow traffic: no re-issue, and nothing recorded in the host pool (no failure, no
        success, no ejection, no ``on_error``), so background calls never change how user calls
        are routed.
        """
        started = self._clock()
        host = self._pool.peek()
        result = call(host, self.config.attempt_timeout_seconds)
        return result, Answer(host=host, elapsed_ms=(self._clock() - started) * 1000)

    def _worth_all(self, host: str, rest: list[str]) -> bool:
        """Whether ``host`` gets all the time left: it is the last one, or the last admitted one.

        Cutting an admitted host short only pays when another host is likely to answer. When the
        hosts after it are all ejected (known not to answer: one restarting, say), a slow answer
        from this host beats a certain failure there; they are still tried if this one fails fast.
        """
        if not rest:
            return True
        return not self._pool.is_ejected(host) and all(self._pool.is_ejected(other) for other in rest)

    def _failed(self, host: str, error: ServingError) -> None:
        kind = type(error).__name__
        if self._on_error is not None:
            self._on_error(host, kind)
        if self._pool.failed(host, kind, str(error), sent=getattr(error, "sent", True)):
            logger.warning("TF Serving %s ejected after repeated failures: %s", host, error)
            if self._on_ejection is not None:
                self._on_ejection(host, True)
            self.prober.start()

    def predict(
        self,
        signature: str,
        inputs: dict[str, list[float]],
        output: str = "result",
        *,
        version_label: str | None = None,
    ) -> Prediction:
        """Predict with a signature; returns the flattened ``output`` tensor."""
        return self._predict(self._with_failover, signature, inputs, output, version_label)

    def classify(
        self, signature: str, examples: list[dict[str, float]], *, version_label: str | None = None
    ) -> Classification:
        """Classify tf.Examples built from float features."""
        return self._classify(self._with_failover, signature, examples, version_label)

    def regress(
        self, signature: str, examples: list[dict[str, float]], *, version_label: str | None = None
    ) -> Regression:
        """Regress tf.Examples built from float features."""
        return self._regress(self._with_failover, signature, examples, version_label)

    def shadow_predict(
        self, signature: str, inputs: dict[str, list[float]], output: str = "result", *, version_label: str
    ) -> Prediction:
        """``predict`` as one attempt on one host that leaves no trace in the routing (shadow traffic)."""
        return self._predict(self._single_attempt, signature, inputs, output, version_label)

    def shadow_classify(
        self, signature: str, examples: list[dict[str, float]], *, version_label: str
    ) -> Classification:
        """``classify`` as one attempt on one host that leaves no trace in the routing."""
        return self._classify(self._single_attempt, signature, examples, version_label)

    def shadow_regress(
        self, signature: str, examples: list[dict[str, float]], *, version_label: str
    ) -> Regression:
        """``regress`` as one attempt on one host that leaves no trace in the routing."""
        return self._regress(self._single_attempt, signature, examples, version_label)

    def _predict(self, run, signature, inputs, output, version_label) -> Prediction:
        (values, version), answer = run(
            lambda host, left: self._transport.predict(
                host, left, signature, inputs, output, version_label=version_label
            )
        )
        return Prediction(
            host=answer.host,
            elapsed_ms=answer.elapsed_ms,
            values=values,
            model_version=version,
            version_label=version_label,
        )

    def _classify(self, run, signature, examples, version_label) -> Classification:
        (results, version), answer = run(
            lambda host, left: self._transport.classify(
                host, left, signature, examples, version_label=version_label
            )
        )
        return Classification(
            host=answer.host,
            elapsed_ms=answer.elapsed_ms,
            results=results,
            model_version=version,
            version_label=version_label,
        )

    def _regress(self, run, signature, examples, version_label) -> Regression:
        (values, version), answer = run(
            lambda host, left: self._transport.regress(
                host, left, signature, examples, version_label=version_label
            )
        )
        return Regression(
            host=answer.host,
            elapsed_ms=answer.elapsed_ms,
            values=values,
            model_version=version,
            version_label=version_label,
        )

    def metadata(self) -> ModelMetadata:
        """The model's signatures (GetModelMetadata)."""
        (version, signatures), answer = self._with_failover(self._transport.metadata)
        return ModelMetadata(
            host=answer.host, elapsed_ms=answer.elapsed_ms, model_version=version, signatures=signatures
        )

    def host_statuses(self) -> list[HostStatus]:
        """Every host's view of the model, asked concurrently, each within ``status_timeout_seconds``.

        An ejected host is not asked (the client already knows it does not answer), so a hung host
        costs a status query at most one timeout, once.
        """

        def ask(host: str) -> HostStatus:
            label = self._pool.label(host)
            if self._pool.is_ejected(host):
                return HostStatus(host=host, label=label, error=UpstreamUnavailable.user_message)
            try:
                versions = self._transport.model_status(host, self.config.status_timeout_seconds)
            except ServingError as error:
                if isinstance(error, NO_ANSWER):
                    self._failed(host, error)
                return HostStatus(host=host, label=label, error=error.user_message)
            return HostStatus(host=host, label=label, versions=sorted(versions, key=lambda v: v.version))

        hosts = self.config.hosts
        if len(hosts) == 1:
            return [ask(hosts[0])]
        with ThreadPoolExecutor(max_workers=len(hosts), thread_name_prefix="tfsp-status") as pool:
            return list(pool.map(ask, hosts))

    def host_health(self) -> list[HostHealth]:
        """The client's own view of each host: ejected or not, errors by kind."""
        return self._pool.health()

    def close(self) -> None:
        """Stop the prober and close the channels or connection pool."""
        self.prober.stop()
        self._transport.close()


__all__ = ["NO_ANSWER", "TFServingClient", "make_transport"]
