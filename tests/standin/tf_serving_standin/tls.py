"""``--ssl_config_file``: TLS on the gRPC port, as TF Serving's model server sets it up.

TF Serving (``tensorflow_serving/model_servers/server.cc``,
``BuildServerCredentialsFromSSLConfigFile``) reads the file as a text-format
``tensorflow.serving.SSLConfig`` (``tensorflow_serving/config/ssl_config.proto``): ``server_key``,
``server_cert`` and ``custom_ca`` hold PEM *contents*, ``client_verify`` asks for client
certificates. It builds gRPC's SSL server credentials from it:

- ``client_verify`` true: ``GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY`` (a client
  must present a certificate that verifies against ``custom_ca``); false:
  ``GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE``;
- ``custom_ca`` becomes the client root certificates when non-empty (gRPC C++'s
  ``SslServerCredentials`` passes an empty one on as "no roots");
- one key/certificate pair, ``server_key`` + ``server_cert``.

The credentials go to every gRPC listening port (the TCP ``--port`` and ``--grpc_socket_path``),
so every gRPC service on them, the health service included, is behind TLS. The REST port is not
touched: it stays plain HTTP.

Failures, in TF Serving's order and words: the file is read only after the models loaded, when
the gRPC port is added. A file that cannot be read or parsed fails a ``TF_CHECK_OK``: a fatal
log line ``Non-OK-status: ParseProtoTextFile<SSLConfig>(ssl_config_file, &ssl_config)`` with the
status, then ``abort()``. Credentials gRPC cannot use (an empty or invalid key or certificate, a
key that does not match the certificate, an unreadable ``custom_ca``) make gRPC refuse the port,
so ``BuildAndStart`` returns ``Failed to BuildAndStart gRPC server`` and the server exits
(``Failed to start server``, status 255). The stand-in uses the same gRPC core, so the same
credentials fail the same way.

The message class is declared here from ``ssl_config.proto`` (same package, names and field
numbers): tensorflow-serving-api does not ship ``ssl_config_pb2``.
"""

from __future__ import annotations

import errno
import logging
import os
import resource
import sys
from pathlib import Path
from typing import NoReturn

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format

from tf_serving_standin.errors import ServingError

log = logging.getLogger("tensorflow_model_server")

#: The expression TF Serving's failed TF_CHECK_OK prints (server.cc).
CHECK_EXPRESSION = "ParseProtoTextFile<SSLConfig>(ssl_config_file, &ssl_config)"
#: What a shell, or Docker for a container whose entrypoint does not exec, reports for SIGABRT.
ABORT_EXIT_STATUS = 128 + 6

#: tensorflow::errors::IOError's errno mapping (ErrnoToCode), for the errors reading a file gives.
_ERRNO_CODE = {
    errno.ENOENT: "NOT_FOUND",
    errno.EACCES: "PERMISSION_DENIED",
    errno.EPERM: "PERMISSION_DENIED",
    errno.EISDIR: "FAILED_PRECONDITION",
    errno.ENOTDIR: "FAILED_PRECONDITION",
    errno.ENAMETOOLONG: "INVALID_ARGUMENT",
}


def _ssl_config_class() -> type:
    field = descriptor_pb2.FieldDescriptorProto
    file_proto = descriptor_pb2.FileDescriptorProto(
        name="tf_serving_standin/ssl_config.proto", package="tensorflow.serving", syntax="proto3"
    )
    message = file_proto.message_type.add(name="SSLConfig")
    for name, number, kind in (
        ("server_key", 1, field.TYPE_STRING),
        ("server_cert", 2, field.TYPE_STRING),
        ("custom_ca", 3, field.TYPE_STRING),
        ("client_verify", 4, field.TYPE_BOOL),
    ):
        message.field.add(name=name, number=number, type=kind, label=field.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file_proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.serving.SSLConfig"))


SSLConfig = _ssl_config_class()


def read_ssl_config(path: str):
    """Read and parse the file as ParseProtoTextFile does; a failure is a ServingError with its status."""
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except OSError as exc:
        code = _ERRNO_CODE.get(exc.errno or 0, "UNKNOWN")
        raise ServingError(code, f"{path}; {exc.strerror}") from exc
    except UnicodeDecodeError:
        log.error("Error parsing text-format tensorflow.serving.SSLConfig: the file is not UTF-8")
        raise ServingError("INVALID_ARGUMENT", f"Invalid protobuf file: '{path}'") from None
    ssl_config = SSLConfig()
    try:
        text_format.Parse(text, ssl_config)
    except text_format.ParseError as exc:
        # protobuf's TextFormat logs the reason; TF's status names only the file.
        log.error("Error parsing text-format tensorflow.serving.SSLConfig: %s", exc)
        raise ServingError("INVALID_ARGUMENT", f"Invalid protobuf file: '{path}'") from exc
    return ssl_config


def credentials_from_ssl_config(ssl_config) -> grpc.ServerCredentials:
    """gRPC SSL server credentials built as BuildServerCredentialsFromSSLConfigFile builds them."""
    root_certificates = ssl_config.custom_ca.encode() or None
    if root_certificates is None and ssl_config.client_verify:
        # TF Serving then hands gRPC no client roots with "require and verify": the port opens and
        # every client certificate fails verification. grpcio's Python wrapper refuses None here;
        # an empty root set reaches the same gRPC core state (tested: the port opens, clients are
        # refused).
        root_certificates = b""
    return grpc.ssl_server_credentials(
        [(ssl_config.server_key.encode(), ssl_config.server_cert.encode())],
        root_certificates=root_certificates,
        require_client_auth=ssl_config.client_verify,
    )


def fatal_check_failed(status: ServingError) -> NoReturn:
    """A failed TF_CHECK_OK: log it as LOG(FATAL) does, then abort.

    Run directly, the process dies of SIGABRT, as the real binary does. As PID 1 of a container
    (the stand-in's entrypoint execs) the kernel would ignore the signal, so the process exits
    with 134 instead: the status Docker reports for the official image, whose entrypoint shell
    sees its child die of SIGABRT (abort() in PID 1 would end in SIGSEGV, 139). No core file is
    written (a test fixture leaves none behind).
    """
    log.critical("Non-OK-status: %s\nStatus: %s", CHECK_EXPRESSION, status)
    for handler in (*log.handlers, *logging.getLogger().handlers):
        handler.flush()
    sys.stderr.flush()
    sys.stdout.flush()
    if os.getpid() == 1:
        os._exit(ABORT_EXIT_STATUS)
    resource.setrlimit(resource.RLIMIT_CORE, (0, resource.getrlimit(resource.RLIMIT_CORE)[1]))
    os.abort()


def server_credentials(ssl_config_file: str) -> grpc.ServerCredentials | None:
    """None (plaintext) without a file; else the file's credentials, or the fatal error TF Serving has."""
    if not ssl_config_file:
        return None
    try:
        ssl_config = read_ssl_config(ssl_config_file)
    except ServingError as exc:
        fatal_check_failed(exc)
    return credentials_from_ssl_config(ssl_config)
