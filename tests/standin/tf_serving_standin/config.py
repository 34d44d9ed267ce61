"""Model server and monitoring configuration, read with TF Serving's own protos.

The model config file is a text-format ``tensorflow.serving.ModelServerConfig``
parsed with the generated class from tensorflow-serving-api. The monitoring
config's proto is not shipped in that package, so its two messages are declared
here from TF Serving's config/monitoring_config.proto (same package, names and
field numbers) and parsed with the same text-format parser.
"""

from __future__ import annotations

import re
from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format
from tensorflow_serving.config import model_server_config_pb2

from tf_serving_standin.errors import ServingError, invalid_argument

#: TF Serving's default Prometheus path (PrometheusExporter::kPrometheusPath).
DEFAULT_PROMETHEUS_PATH = "/monitoring/prometheus/metrics"
_LABEL_RE = re.compile(r"^[a-zA-Z0-9_]+$")


def single_model_config(model_name: str, model_base_path: str) -> model_server_config_pb2.ModelServerConfig:
    """The config --model_name/--model_base_path stand for (BuildSingleModelConfig in main.cc)."""
    config = model_server_config_pb2.ModelServerConfig()
    model = config.model_config_list.config.add()
    model.name = model_name
    model.base_path = model_base_path
    model.model_platform = "tensorflow"
    return config


def parse_model_config(text: str, source: str = "<text>") -> model_server_config_pb2.ModelServerConfig:
    """Parse a text-format ModelServerConfig; a syntax error is INVALID_ARGUMENT."""
    config = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as exc:
        raise invalid_argument(f"Invalid protobuf file: '{source}': {exc}") from exc
    return config


def read_model_config(path: str) -> model_server_config_pb2.ModelServerConfig:
    """Read and parse --model_config_file."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ServingError("NOT_FOUND", f"{path}; {exc.strerror}") from exc
    return parse_model_config(text, path)


def validate_model_config(config: model_server_config_pb2.ModelServerConfig) -> None:
    """The checks ServerCore::ValidateConfig and the label map update make."""
    if config.WhichOneof("config") == "custom_model_config":
        raise ServingError("UNIMPLEMENTED", "ModelServer does not yet support custom model config.")
    names = set()
    for model in config.model_config_list.config:
        if not model.name:
            raise invalid_argument("Illegal to have model config with empty name")
        if model.name in names:
            raise invalid_argument(f"Illegal to list model {model.name} multiple times in config list")
        names.add(model.name)
        if model.model_platform not in ("", "tensorflow"):
            raise invalid_argument(
                f"Model {model.name} requested unsupported platform {model.model_platform}"
                " (the stand-in serves TensorFlow SavedModels only)"
            )
        if not model.base_path:
            raise invalid_argument(f"Model {model.name} has no base_path")
        for label in model.version_labels:
            if not _LABEL_RE.match(label):
                raise invalid_argument(
                    f"Invalid label name: {label}. Label names must match the regex [a-zA-Z0-9_]+"
                )


def _monitoring_classes():
    file_proto = descriptor_pb2.FileDescriptorProto(
        name="tf_serving_standin/monitoring_config.proto", package="tensorflow.serving", syntax="proto3"
    )
    prometheus = file_proto.message_type.add(name="PrometheusConfig")
    prometheus.field.add(name="enable", number=1, type=8, label=1, json_name="enable")
    prometheus.field.add(name="path", number=2, type=9, label=1, json_name="path")
    monitoring = file_proto.message_type.add(name="MonitoringConfig")
    monitoring.field.add(
        name="prometheus_config",
        number=1,
        type=11,
        label=1,
        type_name=".tensorflow.serving.PrometheusConfig",
        json_name="prometheusConfig",
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file_proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.serving.MonitoringConfig"))


MonitoringConfig = _monitoring_classes()


def read_monitoring_config(path: str):
    """Parse --monitoring_config_file (text-format MonitoringConfig); fill the default path."""
    config = MonitoringConfig()
    try:
        text_format.Parse(Path(path).read_text(), config)
    except OSError as exc:
        raise ServingError("NOT_FOUND", f"{path}; {exc.strerror}") from exc
    except text_format.ParseError as exc:
        raise invalid_argument(f"Invalid protobuf file: '{path}': {exc}") from exc
    if config.prometheus_config.enable and not config.prometheus_config.path:
        config.prometheus_config.path = DEFAULT_PROMETHEUS_PATH
    return config
