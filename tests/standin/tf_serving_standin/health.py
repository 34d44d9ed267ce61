"""``grpc.health.v1.Health``, as ``--enable_grpc_healthcheck_service`` turns it on in TF Serving.

TF Serving (2.15 and later) enables gRPC C++'s default health check service when the flag is true
(default false). That service knows one name, ``""`` (the whole server), which is SERVING from the
moment the port opens; TF Serving opens its ports only after the first model versions loaded and
never changes the status with the models' state. Any other service name is unknown: ``Check``
answers NOT_FOUND, ``Watch`` sends SERVICE_UNKNOWN and stays open. When the server shuts down,
gRPC sets every status to NOT_SERVING (``HealthCheckServiceInterface::Shutdown``). Without the flag
the service is not registered, so a call answers UNIMPLEMENTED.

The stand-in image has no ``grpcio-health-checking``, so the two messages of
``grpc/health/v1/health.proto`` are built here from their descriptor (same names, same field
numbers, hence the same bytes on the wire), in a private descriptor pool. ``Watch`` does not hold
a server thread per stream (like grpcio-health-checking's servicer, it uses the server's
non-blocking streaming hook), so health watchers never starve the Predict threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

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
    """The statuses and the open ``Watch`` streams; ``shutdown`` is gRPC's own shutdown step."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # the statuses and the watchers; never held while sending
        self._sends = threading.Lock()  # one sending thread at a time: each stream's answers in order
        self._status = {OVERALL: SERVING}
        self._watchers: dict[str, set[Callable]] = {}
        self._shut_down = False

    def Check(self, request, context):
        with self._lock:
            status = self._status.get(request.service)
        if status is None:
            context.abort(grpc.StatusCode.NOT_FOUND, "service name unknown")
        return HealthCheckResponse(status=status)

    def Watch(self, request, context, send_response_callback=None):
        service = request.service
        send = send_response_callback

        def forget() -> None:
            with self._lock:
                self._watchers.get(service, set()).discard(send)

        # A send waits until gRPC's serving thread has passed the previous message on, and that
        # thread also runs the stream's close callback (``forget``, which takes ``_lock``): so no
        # send happens under ``_lock``, or a stream closed while its first answer leaves freezes
        # the whole server. ``_sends`` keeps the answers in order instead (first status, then
        # shutdown's NOT_SERVING); only sending threads take it.
        with self._sends:
            with self._lock:
                status = self._status.get(service, SERVICE_UNKNOWN)
                shut_down = self._shut_down
                if not shut_down:
                    self._watchers.setdefault(service, set()).add(send)
            if not shut_down and not context.add_callback(forget):
                forget()  # the stream has already ended
            send(HealthCheckResponse(status=status))
            if shut_down:
                send(None)  # ends the stream (status OK): the client watches again elsewhere

    Watch.experimental_non_blocking = True  # grpc's server passes send_response_callback

    def shutdown(self) -> None:
        """Every status to NOT_SERVING, told to every watcher, whose streams then end."""
        with self._sends:
            with self._lock:
                self._shut_down = True
                for service in self._status:
                    self._status[service] = NOT_SERVING
                watchers = [(s, send) for s, sends in self._watchers.items() for send in sends]
                self._watchers.clear()
            for service, send in watchers:
                send(HealthCheckResponse(status=self._status.get(service, SERVICE_UNKNOWN)))
                send(None)

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
