"""The model manager: versions on disk, version policies, labels, loads and unloads.

It plays the part of TF Serving's ServerCore + FileSystemStoragePathSource +
AspiredVersionsManager with the AvailabilityPreservingPolicy:

* versions are the children of a model's base_path whose names are integers;
* the version policy (latest{n} / all / specific) picks the aspired versions;
* a new version is loaded (and warmed up) before any old one is unloaded, and
  the last available version is never unloaded because a newer one failed;
* a version that fails to load ends in state END with the error in its status,
  and is not retried while it stays aspired;
* labels may only point at AVAILABLE versions (unless
  --allow_version_labels_for_unavailable_models allows new labels).

One poll thread does the loading, as the real server's single source/manager
thread does; requests run on other threads and keep their servable alive.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tensorflow_serving.apis import get_model_status_pb2, model_pb2
from tensorflow_serving.config import model_server_config_pb2

from tf_serving_standin import heap, metrics
from tf_serving_standin.config import validate_model_config
from tf_serving_standin.errors import CODE_NUMBER, ServingError, from_exception
from tf_serving_standin.servable import Servable

log = logging.getLogger(__name__)
_VERSION_DIR = re.compile(r"^\d+$")
State = get_model_status_pb2.ModelVersionStatus.State


@dataclasses.dataclass
class VersionEntry:
    """What GetModelStatus reports for one version (and the servable while loaded)."""

    state: int
    error_code: str = "OK"
    error_message: str = ""
    servable: Servable | None = None


@dataclasses.dataclass
class Model:
    """One configured model and its versions."""

    config: model_server_config_pb2.ModelConfig
    versions: dict[int, VersionEntry] = dataclasses.field(default_factory=dict)
    labels: dict[str, int] = dataclasses.field(default_factory=dict)
    warned_empty: bool = False
    failed_while_aspired: set[int] = dataclasses.field(default_factory=set)


def disk_versions(base_path: str) -> list[int]:
    """Integer-named child directories of base_path, ascending."""
    try:
        children = list(Path(base_path).iterdir())
    except FileNotFoundError:
        raise ServingError("NOT_FOUND", f"Could not find base path {base_path} for servable") from None
    except OSError as exc:
        raise from_exception(exc) from exc
    return sorted(int(c.name) for c in children if _VERSION_DIR.match(c.name) and c.is_dir())


def aspired_versions(config: model_server_config_pb2.ModelConfig, on_disk: list[int]) -> set[int]:
    """Apply the model's version policy to the versions found on disk."""
    policy = config.model_version_policy
    which = policy.WhichOneof("policy_choice")
    if which == "all":
        return set(on_disk)
    if which == "specific":
        wanted = set(policy.specific.versions)
        return {v for v in on_disk if v in wanted}
    count = policy.latest.num_versions if which == "latest" and policy.latest.num_versions > 0 else 1
    return set(on_disk[-count:]) if on_disk else set()


class ServerCore:
    """Owns the models; thread-safe lookups for the request paths."""

    def __init__(
        self,
        *,
        poll_wait_seconds: int,
        enable_warmup: bool,
        warmup_iterations: int,
        saved_model_tags: list[str],
        allow_labels_for_unavailable: bool,
        warmup_runner: Callable[[Servable], None] | None = None,
        test_delay_file: str = "",
    ) -> None:
        self._lock = threading.RLock()
        self._models: dict[str, Model] = {}
        self._poll_wait = poll_wait_seconds
        self._enable_warmup = enable_warmup
        self._warmup_iterations = max(1, warmup_iterations)
        self._tags = saved_model_tags
        self._allow_unavailable_labels = allow_labels_for_unavailable
        self._test_delay_file = test_delay_file
        self.warmup_runner = warmup_runner
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.config = model_server_config_pb2.ModelServerConfig()
        self._removed: dict[str, Model] = {}

    # -- configuration -----------------------------------------------------------

    def load_initial(self, config: model_server_config_pb2.ModelServerConfig) -> None:
        """Apply the first config and wait until every model's first versions settle.

        Like ServerCore::Create: fails if a base path is missing or a model did not
        become available; keeps waiting while a model has no version on disk.
        """
        validate_model_config(config)
        for model_config in config.model_config_list.config:
            disk_versions(model_config.base_path)
        with self._lock:
            self._apply_models(config)
            self._update_labels(config)
            self.config = config
        while True:
            self.poll_once()
            with self._lock:
                pending = [
                    m.config.name
                    for m in self._models.values()
                    if not any(e.state == State.AVAILABLE for e in m.versions.values())
                ]
                failed = [
                    f"{m.config.name}: {e.error_code}: {e.error_message}"
                    for m in self._models.values()
                    for e in m.versions.values()
                    if e.error_code != "OK"
                ]
            if failed:
                raise ServingError("UNKNOWN", "Some models did not become available: " + "; ".join(failed))
            if not pending:
                return
            if self._poll_wait < 0 or self._stop.wait(max(self._poll_wait, 1)):
                raise ServingError("UNAVAILABLE", f"Models never became available: {pending}")

    def reload(self, config: model_server_config_pb2.ModelServerConfig) -> None:
        """HandleReloadConfigRequest / config-file poll: realise exactly this config."""
        validate_model_config(config)
        if config.WhichOneof("config") is None:
            raise ServingError("INVALID_ARGUMENT", "ServerCore config must not be empty")
        with self._lock:
            self._apply_models(config)
            self.config = config
            self._update_labels(config)
        self._wake.set()

    def _apply_models(self, config: model_server_config_pb2.ModelServerConfig) -> None:
        wanted = {c.name: c for c in config.model_config_list.config}
        for name in list(self._models):
            if name not in wanted:
                model = self._models.pop(name)
                for version, entry in model.versions.items():
                    if entry.servable is not None:
                        log.info("Unloading servable version {name: %s version: %d}", name, version)
                        entry.servable = None
                        entry.state = State.END
                self._removed[name] = model
        for name, model_config in wanted.items():
            if name in self._models:
                self._models[name].config = model_config
            else:
                self._models[name] = self._removed.pop(name, None) or Model(model_config)
                self._models[name].config = model_config
                self._models[name].labels = {}

    def _update_labels(self, config: model_server_config_pb2.ModelServerConfig) -> None:
        new_maps: dict[str, dict[str, int]] = {}
        for model_config in config.model_config_list.config:
            model = self._models[model_config.name]
            labels = dict(model_config.version_labels)
            for label, version in labels.items():
                available = version in model.versions and model.versions[version].state == State.AVAILABLE
                newly_assigned = label not in model.labels
                if not available and not (self._allow_unavailable_labels and newly_assigned):
                    raise ServingError(
                        "FAILED_PRECONDITION",
                        f"Request to assign label to version {version} of model {model_config.name}, "
                        "which is not currently available for inference",
                    )
            new_maps[model_config.name] = labels
        for name, labels in new_maps.items():
            self._models[name].labels = labels

    # -- polling, loading, unloading -------------------------------------------------

    def start(self) -> None:
        """Start the file-system poll thread (no-op when polling is off)."""
        if self._poll_wait <= 0 and self._poll_wait != 0:
            return
        self._thread = threading.Thread(target=self._poll_loop, name="fs-poll", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling."""
        self._stop.set()
        self._wake.set()

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            if self._poll_wait > 0:
                self._wake.wait(self._poll_wait)
            else:
                self._wake.wait()  # poll once at start-up: only reloads wake us
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.poll_once()
            except Exception:
                log.exception("file system poll failed")

    def poll_once(self) -> None:
        """Look at every model's base path and move versions towards the policy."""
        with self._lock:
            models = list(self._models.values())
        for model in models:
            name = model.config.name
            try:
                on_disk = disk_versions(model.config.base_path)
            except ServingError as exc:
                log.error("%s", exc.message)
                continue
            if not on_disk:
                if not model.warned_empty:
                    log.warning(
                        "No versions of servable %s found under base path %s", name, model.config.base_path
                    )
                    model.warned_empty = True
                continue
            model.warned_empty = False
            aspired = aspired_versions(model.config, on_disk)
            # A version that failed is not retried while it stays aspired (as the real manager).
            model.failed_while_aspired &= aspired
            for version in sorted(aspired):
                entry = model.versions.get(version)
                if entry is not None and entry.state in (State.AVAILABLE, State.LOADING):
                    continue
                if version in model.failed_while_aspired:
                    continue
                self._load(model, version)
            any_aspired_available = any(
                model.versions.get(v) is not None and model.versions[v].state == State.AVAILABLE
                for v in aspired
            )
            if not any_aspired_available:
                continue
            for version, entry in sorted(model.versions.items()):
                if version in aspired or entry.state != State.AVAILABLE:
                    continue
                log.info("Unloading servable version {name: %s version: %d}", name, version)
                with self._lock:
                    entry.state = State.UNLOADING
                    entry.servable = None
                    entry.state = State.END
                metrics.model_unloaded(name)

    def _test_delay(self, path: Path) -> float:
        """Seconds a version waits before each answer (--standin_test_delay_file; test-only)."""
        if not self._test_delay_file:
            return 0.0
        marker = path / self._test_delay_file
        if not marker.is_file():
            return 0.0
        milliseconds = float(marker.read_text().strip() or 0)
        log.warning("TEST-ONLY: version %s answers %.0f ms late (%s)", path, milliseconds, marker)
        return max(0.0, milliseconds) / 1000

    def _load(self, model: Model, version: int) -> None:
        name = model.config.name
        path = Path(model.config.base_path) / str(version)
        entry = VersionEntry(State.LOADING)
        with self._lock:
            model.versions[version] = entry
        log.info("Loading servable version {name: %s version: %d} from %s", name, version, path)
        started = time.monotonic()
        try:
            servable = Servable(name, version, path, self._tags, self._test_delay(path))
            if self._enable_warmup and self.warmup_runner is not None:
                for _ in range(self._warmup_iterations):
                    self.warmup_runner(servable)
        except Exception as exc:
            error = from_exception(exc)
            log.error("Loading servable version {name: %s version: %d} failed: %s", name, version, error)
            with self._lock:
                entry.state = State.END
                entry.error_code, entry.error_message = error.code, error.message
                model.failed_while_aspired.add(version)
            metrics.model_load(name, str(path), error.code)
            return
        with self._lock:
            entry.servable = servable
            entry.state = State.AVAILABLE
        metrics.model_load(name, str(path), "OK")
        heap.freeze_long_lived()
        log.info(
            "Successfully loaded servable version {name: %s version: %d} in %.2fs",
            name,
            version,
            time.monotonic() - started,
        )

    # -- lookups for the APIs ------------------------------------------------------

    def resolve_version(self, spec: model_pb2.ModelSpec) -> tuple[str, int | None]:
        """Return (model name, version or None for latest), applying labels."""
        choice = spec.WhichOneof("version_choice")
        if choice == "version":
            return spec.name, spec.version.value
        if choice == "version_label":
            with self._lock:
                model = self._models.get(spec.name)
                version = model.labels.get(spec.version_label) if model else None
            if version is None:
                raise ServingError(
                    "INVALID_ARGUMENT", f"Unrecognized servable version label: {spec.version_label}"
                )
            return spec.name, version
        return spec.name, None

    def servable(self, spec: model_pb2.ModelSpec) -> Servable:
        """The servable a request's ModelSpec names; NOT_FOUND as TF Serving words it."""
        name, version = self.resolve_version(spec)
        with self._lock:
            model = self._models.get(name)
            if model is not None:
                available = {
                    v: e.servable
                    for v, e in model.versions.items()
                    if e.state == State.AVAILABLE and e.servable is not None
                }
                if version is None and available:
                    return available[max(available)]
                if version is not None and version in available:
                    return available[version]
        request = f"Latest({name})" if version is None else f"Specific({name}, {version})"
        raise ServingError("NOT_FOUND", f"Servable not found for request: {request}")

    def model_status(self, spec: model_pb2.ModelSpec) -> get_model_status_pb2.GetModelStatusResponse:
        """GetModelStatus (get_model_status_impl.cc): all versions, newest first, or one."""
        name = spec.name
        response = get_model_status_pb2.GetModelStatusResponse()
        with self._lock:
            model = self._models.get(name) or self._removed.get(name)
            versions = dict(model.versions) if model else {}
            if spec.WhichOneof("version_choice") == "version_label":
                label_version = model.labels.get(spec.version_label) if model else None
                if label_version is None:
                    raise ServingError(
                        "INVALID_ARGUMENT", f"Unrecognized servable version label: {spec.version_label}"
                    )
                spec = model_pb2.ModelSpec(name=name)
                spec.version.value = label_version
            if spec.HasField("version"):
                entry = versions.get(spec.version.value)
                if entry is None:
                    raise ServingError(
                        "NOT_FOUND", f"Could not find version {spec.version.value} of model {name}"
                    )
                selected = {spec.version.value: entry}
            else:
                if not versions:
                    raise ServingError("NOT_FOUND", f"Could not find any versions of model {name}")
                selected = versions
            for version in sorted(selected, reverse=True):
                entry = selected[version]
                status = response.model_version_status.add(version=version, state=entry.state)
                status.status.error_code = CODE_NUMBER[entry.error_code]
                status.status.error_message = entry.error_message
        return response

    def model_names(self) -> list[str]:
        """Names of the configured models."""
        with self._lock:
            return sorted(self._models)
