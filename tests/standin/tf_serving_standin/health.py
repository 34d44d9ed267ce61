"""``grpc.health.v1.Health``, as ``--enable_grpc_healthcheck_service`` turns it on in TF Serving.

TF Serving (2.15 and later) enables gRPC C++'s default health check service when the flag is true
(default false). That service knows one name, ``""`` (the whole server), which is SERVING from the
moment the port opens; TF Serving opens its ports only after the first model versions loaded and
never changes the status with the models' state. Any other service name is unknown: ``Check``
answers NOT_FOUND, ``Watch`` sends SERVICE_UNKNOWN and stays open. gRPC would set every status to
NOT_SERVING in its server's shutdown (``HealthCheckServiceInterface::Shutdown``), but TF Serving
never shuts its server down: it has no SIGTERM handler (tensorflow/serving#1853) and dies on the
signal, so a watcher's stream breaks (UNAVAILABLE) instead. The statuses therefore never change,
and a ``Watch`` sends one answer and stays open until its client or the process goes. Without the
flag the service is not registered, so a call answers UNIMPLEMENTED.

The stand-in image has no ``grpcio-health-checking``, so the two messages of
``grpc/health/v1/health.proto`` are built here from their descriptor (same names, same field
numbers, hence the same bytes on the wire), in a private descriptor pool. ``Watch`` does not hold
a server thread per stream (like grpcio-health-checking's servicer, it uses the server's
non-blocking streaming hook), so health watchers never starve the Predict threads.
"""

from __future__ import annotations

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

SERVICE = "grpc.health.v1.Health"
OVERALL = ""

UNKNOWN, SERVING, NOT_SERVING, SERVICE_UNKNOWN = 0, 1, 2, 3


def _message_classes() -> tuple[type, type]:
    field = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name="grpc/health/v1/health.proto", package="grpc.health.v1")
    proto.syntax = "proto3"
    request = proto.message_type.add(name="HealthCheckRequest")
    request.field.add(name="service", number=1, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
    response = proto.message_type.add(name="HealthCheckResponse")
    status = response.enum_type.add(name="ServingStatus")
    for name, number in (
        ("UNKNOWN", UNKNOWN),
        ("SERVING", SERVING),
        ("NOT_SERVING", NOT_SERVING),
        ("SERVICE_UNKNOWN", SERVICE_UNKNOWN),
    ):
        status.value.add(name=name, number=number)
    response.field.add(
        name="status",
        number=1,
        type=field.TYPE_ENUM,
        type_name=".grpc.health.v1.HealthCheckResponse.ServingStatus",
        label=field.LABEL_OPTIONAL,
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return (
        message_factory.GetMessageClass(pool.FindMessageTypeByName("grpc.health.v1.HealthCheckRequest")),
        message_factory.GetMessageClass(pool.FindMessageTypeByName("grpc.health.v1.HealthCheckResponse")),
    )


HealthCheckRequest, HealthCheckResponse = _message_classes()


class HealthService:
    """The statuses, fixed from the start: SERVING for the whole server, nothing else known."""

    def __init__(self) -> None:
        self._status = {OVERALL: SERVING}

    def Check(self, request, context):
        status = self._status.get(request.service)
        if status is None:
            context.abort(grpc.StatusCode.NOT_FOUND, "service name unknown")
        return HealthCheckResponse(status=status)

    def Watch(self, request, context, send_response_callback=None):
        # The one answer a watcher gets; the stream stays open (no status ever changes) and holds
        # no server thread (the non-blocking hook below).
        send_response_callback(HealthCheckResponse(status=self._status.get(request.service, SERVICE_UNKNOWN)))

    Watch.experimental_non_blocking = True  # grpc's server passes send_response_callback

    def register(self, server: grpc.Server) -> None:
        """Add the service to a (not yet started) server."""
        handler = grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "Check": grpc.unary_unary_rpc_method_handler(
                    self.Check,
                    request_deserializer=HealthCheckRequest.FromString,
                    response_serializer=HealthCheckResponse.SerializeToString,
                ),
                "Watch": grpc.unary_stream_rpc_method_handler(
                    self.Watch,
                    request_deserializer=HealthCheckRequest.FromString,
                    response_serializer=HealthCheckResponse.SerializeToString,
                ),
            },
        )
        server.add_generic_rpc_handlers((handler,))
