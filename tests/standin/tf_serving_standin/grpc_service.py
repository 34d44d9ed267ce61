"""The gRPC services, on the generated servicers from tensorflow-serving-api."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from concurrent import futures

import grpc
from tensorflow_serving.apis import (
    model_management_pb2,
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
    status_pb2,
)

from tf_serving_standin import metrics
from tf_serving_standin.api import ServingApi
from tf_serving_standin.errors import CODE_NUMBER, ServingError, from_exception
from tf_serving_standin.health import HealthService

log = logging.getLogger(__name__)


def _call(api_name: str, fn: Callable, request, context: grpc.ServicerContext):
    started = time.monotonic()
    if "model_spec" in request.DESCRIPTOR.fields_by_name:
        model = request.model_spec.name
    else:  # MultiInferenceRequest
        model = request.tasks[0].model_spec.name if request.tasks else ""
    status = "OK"
    try:
        return fn(request)
    except ServingError as exc:
        status = exc.code
        log.debug("%s failed: %s", api_name, exc)
        context.abort(exc.grpc_code, exc.message)
    except Exception as exc:
        error = from_exception(exc, "INTERNAL")
        status = error.code
        log.exception("%s failed", api_name)
        context.abort(error.grpc_code, error.message)
    finally:
        metrics.request(model, api_name, "GRPC", status, time.monotonic() - started)


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    """tensorflow.serving.PredictionService."""

    def __init__(self, api: ServingApi) -> None:
        self.api = api

    def Predict(self, request, context):
        return _call("predict", self.api.predict, request, context)

    def Classify(self, request, context):
        return _call("classify", self.api.classify, request, context)

    def Regress(self, request, context):
        return _call("regress", self.api.regress, request, context)

    def MultiInference(self, request, context):
        return _call("multi_inference", self.api.multi_inference, request, context)

    def GetModelMetadata(self, request, context):
        return _call("get_model_metadata", self.api.get_model_metadata, request, context)


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    """tensorflow.serving.ModelService."""

    def __init__(self, api: ServingApi, reload_config: Callable) -> None:
        self.api = api
        self.reload_config = reload_config

    def GetModelStatus(self, request, context):
        return _call("get_model_status", self.api.get_model_status, request, context)

    def HandleReloadConfigRequest(self, request, context):
        # As model_service_impl.cc: the outcome goes into response.status *and* the RPC status.
        response = model_management_pb2.ReloadConfigResponse()
        try:
            if request.config.WhichOneof("config") != "model_config_list":
                raise ServingError(
                    "INVALID_ARGUMENT",
                    "ServerModelConfig type not supported by HandleReloadConfigRequest. Only "
                    "ModelConfigList is currently supported",
                )
            self.reload_config(request.config)
        except Exception as exc:
            error = from_exception(exc)
            log.error("ReloadConfig failed: %s", error)
            context.abort(error.grpc_code, error.message)
        response.status.CopyFrom(status_pb2.StatusProto(error_code=CODE_NUMBER["OK"]))
        return response


_INT32 = re.compile(r"\s*[+-]?\d+\s*")


def parse_channel_arguments(text: str) -> list[tuple[str, int | str]]:
    """``--grpc_channel_arguments``: "key=value,key=value" as server.cc reads it.

    Split on "," then "="; a value that parses as a 32-bit integer is passed as an integer, any
    other as a string (gRPC ignores, with a log line, the arguments it does not know). An empty
    flag passes none. An entry without "=" makes TF Serving read past its split (undefined
    behaviour); the stand-in refuses it at start instead.
    """
    arguments: list[tuple[str, int | str]] = []
    for entry in text.split(",") if text else []:
        key_value = entry.split("=")
        if len(key_value) < 2:
            raise ServingError(
                "INVALID_ARGUMENT", f"--grpc_channel_arguments entry '{entry}' is not key=value"
            )
        key, value = key_value[0], key_value[1]
        if _INT32.fullmatch(value) and -(2**31) <= int(value) < 2**31:
            arguments.append((key, int(value)))
        else:
            arguments.append((key, value))
    return arguments


def create_server(
    port: int,
    api: ServingApi,
    reload_config: Callable,
    max_threads: int,
    health: HealthService | None = None,
    credentials: grpc.ServerCredentials | None = None,
    channel_arguments: Sequence[tuple[str, int | str]] = (),
) -> grpc.Server:
    """Build (not start) the gRPC server listening on 0.0.0.0:port (with ``health`` if given).

    With ``credentials`` (from --ssl_config_file) the port speaks TLS only, for every service on
    it; without, plaintext. A port gRPC refuses (credentials it cannot use, an address it cannot
    bind) fails as gRPC's ServerBuilder::BuildAndStart does in TF Serving: INVALID_ARGUMENT
    "Failed to BuildAndStart gRPC server". ``channel_arguments`` (from --grpc_channel_arguments)
    are added after the server's own, as server.cc adds them to its ServerBuilder, so they win.
    """
    # server.cc: SetMaxMessageSize(kint32max), then the flag's arguments.
    options = {"grpc.max_receive_message_length": -1, "grpc.max_send_message_length": -1}
    options.update(channel_arguments)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_threads or 16, thread_name_prefix="grpc"),
        options=list(options.items()),
    )
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionService(api), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(api, reload_config), server)
    if health is not None:
        health.register(server)
    address = f"0.0.0.0:{port}"
    try:
        if credentials is None:
            bound = server.add_insecure_port(address)
        else:
            bound = server.add_secure_port(address, credentials)
    except RuntimeError:  # grpcio raises where gRPC C++ returns port 0
        bound = 0
    if bound == 0:
        log.error("Could not add gRPC listening port %s", address)
        raise ServingError("INVALID_ARGUMENT", "Failed to BuildAndStart gRPC server")
    return server
