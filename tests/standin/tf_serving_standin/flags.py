"""Command-line flags, parsed the way tensorflow_model_server parses them.

Flags are ``--name=value`` (booleans also ``--name``). The names and defaults are
TF Serving's (model_servers/main.cc). Flags that only tune the real server's
internals are accepted and ignored, so a command line written for the official
image runs unchanged; an unknown flag is an error at start-up.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence


class FlagError(Exception):
    """A command-line error: printed with the usage text, exit status non-zero."""


@dataclasses.dataclass
class Options:
    """Parsed flags. Field names are the flag names."""

    port: int = 8500
    grpc_socket_path: str = ""
    rest_api_port: int = 0
    rest_api_num_threads: int = 16
    rest_api_timeout_in_ms: int = 30000
    rest_api_enable_cors_support: bool = False
    enable_batching: bool = False
    allow_version_labels: bool = True
    allow_version_labels_for_unavailable_models: bool = False
    batching_parameters_file: str = ""
    enable_per_model_batching_parameters: bool = False
    model_config_file: str = ""
    model_config_file_poll_wait_seconds: int = 0
    model_name: str = "default"
    model_base_path: str = ""
    num_load_threads: int = 0
    num_unload_threads: int = 0
    max_num_load_retries: int = 5
    load_retry_interval_micros: int = 60_000_000
    file_system_poll_wait_seconds: int = 1
    flush_filesystem_caches: bool = True
    tensorflow_session_parallelism: int = 0
    tensorflow_session_config_file: str = ""
    tensorflow_intra_op_parallelism: int = 0
    tensorflow_inter_op_parallelism: int = 0
    use_alts_credentials: bool = False
    ssl_config_file: str = ""
    platform_config_file: str = ""
    per_process_gpu_memory_fraction: float = 0.0
    saved_model_tags: str = "serve"
    grpc_channel_arguments: str = ""
    grpc_max_threads: int = 0
    enable_model_warmup: bool = True
    num_request_iterations_for_warmup: int = 1
    version: bool = False
    monitoring_config_file: str = ""
    remove_unused_fields_from_bundle_metagraph: bool = True
    prefer_tflite_model: bool = False
    num_tflite_pools: int = 1
    num_tflite_interpreters_per_pool: int = 1
    enable_signature_method_name_check: bool = False
    xla_cpu_compilation_enabled: bool = False
    enable_profiler: bool = True
    thread_pool_factory_config_file: str = ""
    mixed_precision: str = ""
    skip_initialize_tpu: bool = False
    enable_grpc_healthcheck_service: bool = False
    enable_serialization_as_tensor_content: bool = False
    # NOT a TF Serving flag: a test-only hook of the stand-in (TF Serving would refuse it as
    # unknown). A version directory holding a file of this name answers every Predict, Classify
    # and Regress only after the milliseconds the file holds: a "slow version" for release drills.
    standin_test_delay_file: str = ""


#: Flags the stand-in implements; every other known flag is accepted and ignored.
IMPLEMENTED = frozenset(
    {
        "port",
        "rest_api_port",
        "rest_api_timeout_in_ms",
        "allow_version_labels",
        "allow_version_labels_for_unavailable_models",
        "model_config_file",
        "model_config_file_poll_wait_seconds",
        "model_name",
        "model_base_path",
        "file_system_poll_wait_seconds",
        "tensorflow_intra_op_parallelism",
        "tensorflow_inter_op_parallelism",
        "saved_model_tags",
        "enable_model_warmup",
        "num_request_iterations_for_warmup",
        "version",
        "monitoring_config_file",
        "grpc_max_threads",
        "grpc_channel_arguments",
        "enable_grpc_healthcheck_service",
        "ssl_config_file",
        "standin_test_delay_file",
    }
)

_FIELDS = {field.name: field for field in dataclasses.fields(Options)}


def usage(program: str = "tensorflow_model_server") -> str:
    """The usage text printed on a flag error."""
    lines = [f"usage: {program}", "Flags (TF Serving stand-in, a test fixture; * = accepted, ignored):"]
    for name, field in _FIELDS.items():
        marker = " " if name in IMPLEMENTED else "*"
        kind = getattr(field.type, "__name__", str(field.type))
        lines.append(f"  {marker} --{name}={field.default!r:<12} {kind}")
    return "\n".join(lines)


def _convert(name: str, kind: str, text: str | None) -> object:
    if kind == "bool":
        if text is None or text.lower() in ("true", "1"):
            return True
        if text.lower() in ("false", "0"):
            return False
        raise FlagError(f"Illegal value '{text}' for boolean flag --{name}")
    if text is None:
        raise FlagError(f"Flag --{name} needs a value: --{name}=VALUE")
    try:
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
    except ValueError:
        raise FlagError(f"Illegal value '{text}' for {kind} flag --{name}") from None
    return text


def parse(argv: Sequence[str]) -> Options:
    """Parse the arguments after the program name; raise FlagError on any unknown argument."""
    options = Options()
    for arg in argv:
        if not arg.startswith("--"):
            raise FlagError(f"unknown argument: {arg}")
        name, sep, value = arg[2:].partition("=")
        field = _FIELDS.get(name)
        if field is None:
            raise FlagError(f"unknown argument: {arg} (unknown command line flag '{name}')")
        kind = field.type if isinstance(field.type, str) else field.type.__name__
        setattr(options, name, _convert(name, kind, value if sep else None))
    if not options.version and not options.model_config_file and not options.model_base_path:
        raise FlagError("either --model_config_file or --model_base_path must be set")
    return options
