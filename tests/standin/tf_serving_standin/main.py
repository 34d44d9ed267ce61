"""``tensorflow_model_server`` of the stand-in: flags, start-up, serving until killed.

Start-up follows TF Serving: parse flags (unknown flag: usage, exit non-zero),
build the model config, load every model's first versions, and only then open
the gRPC port and (if --rest_api_port is not 0) the REST port. Like TF Serving,
which installs no handler for SIGTERM or SIGINT (tensorflow/serving#1853), the
server then runs until a signal kills it: no drain, the calls it holds are cut
(their clients see UNAVAILABLE) and the exit status is the signal's.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Sequence

from tf_serving_standin import VERSION
from tf_serving_standin.errors import ServingError
from tf_serving_standin.flags import FlagError, Options, parse, usage

log = logging.getLogger("tensorflow_model_server")


def _config_poller(core, path: str, wait: int, stop: threading.Event) -> None:
    from tf_serving_standin.config import read_model_config

    # Like TF Serving's poll, a config that failed to apply (say, a label on a version
    # still loading) is tried again on the next poll, until it applies.
    applied = core.config
    while not stop.wait(wait):
        try:
            config = read_model_config(path)
            if config == applied:
                continue
            log.info("Reloading model config file %s", path)
            core.reload(config)
            applied = config
        except ServingError as exc:
            log.error("Reloading model config file %s failed: %s", path, exc)


def serve(options: Options) -> int:
    """Run the server until a signal kills it; return an exit status only when it cannot start."""
    import tensorflow as tf

    from tf_serving_standin.api import ServingApi
    from tf_serving_standin.config import read_model_config, read_monitoring_config, single_model_config
    from tf_serving_standin.core import ServerCore
    from tf_serving_standin.grpc_service import create_server, parse_channel_arguments
    from tf_serving_standin.health import HealthService
    from tf_serving_standin.rest import RestServer
    from tf_serving_standin.tls import server_credentials

    if options.tensorflow_intra_op_parallelism:
        tf.config.threading.set_intra_op_parallelism_threads(options.tensorflow_intra_op_parallelism)
    if options.tensorflow_inter_op_parallelism:
        tf.config.threading.set_inter_op_parallelism_threads(options.tensorflow_inter_op_parallelism)

    # The C++ server's dispositions: SIGTERM and SIGINT end the process where it stands (Python
    # would turn SIGINT into KeyboardInterrupt).
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, signal.SIG_DFL)
    stop = threading.Event()  # never set: the process ends by a signal

    try:
        if options.model_config_file:
            config = read_model_config(options.model_config_file)
        else:
            log.info(
                "Building single TensorFlow model file config:  model_name: %s model_base_path: %s",
                options.model_name,
                options.model_base_path,
            )
            config = single_model_config(options.model_name, options.model_base_path)
        prometheus_path = None
        if options.monitoring_config_file:
            monitoring = read_monitoring_config(options.monitoring_config_file)
            if monitoring.prometheus_config.enable:
                prometheus_path = monitoring.prometheus_config.path
        core = ServerCore(
            poll_wait_seconds=options.file_system_poll_wait_seconds,
            enable_warmup=options.enable_model_warmup,
            warmup_iterations=options.num_request_iterations_for_warmup,
            saved_model_tags=[t for t in options.saved_model_tags.split(",") if t],
            allow_labels_for_unavailable=options.allow_version_labels_for_unavailable_models,
            test_delay_file=options.standin_test_delay_file,
        )
        api = ServingApi(core)
        core.warmup_runner = api.warmup
        core.load_initial(config)
        core.start()

        health = HealthService() if options.enable_grpc_healthcheck_service else None
        # As server.cc: the SSL config is read when the gRPC port is added, after the models loaded;
        # a file that cannot be read or parsed aborts the process (TF_CHECK_OK).
        credentials = server_credentials(options.ssl_config_file)
        grpc_server = create_server(
            options.port,
            api,
            core.reload,
            options.grpc_max_threads,
            health,
            credentials,
            parse_channel_arguments(options.grpc_channel_arguments),
        )
        grpc_server.start()
        log.info("Running gRPC ModelServer at 0.0.0.0:%d ...", options.port)
        if options.rest_api_port != 0:
            if options.rest_api_port == options.port:
                log.error(
                    "--rest_api_port cannot be same as --port. Please use a different port for "
                    "HTTP/REST API. Skipped exporting HTTP/REST API."
                )
            else:
                rest_server = RestServer(options.rest_api_port, api, prometheus_path)
                threading.Thread(target=rest_server.serve_forever, name="rest", daemon=True).start()
                log.info("Exporting HTTP/REST API at:localhost:%d ...", options.rest_api_port)
    except ServingError as exc:
        log.error("Failed to start server. Error: %s", exc)
        return 255
    except OSError as exc:
        log.error("Failed to start server. Error: %s", exc)
        return 255

    if options.model_config_file and options.model_config_file_poll_wait_seconds > 0:
        threading.Thread(
            target=_config_poller,
            args=(core, options.model_config_file, options.model_config_file_poll_wait_seconds, stop),
            name="config-poll",
            daemon=True,
        ).start()

    stop.wait()
    return 0  # not reached


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tensorflow_model_server`` command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname).1s standin %(name)s] %(message)s",
        stream=sys.stderr,
    )
    try:
        options = parse(argv)
    except FlagError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        print(usage(), file=sys.stderr)
        return 255
    if options.version:
        import tensorflow as tf

        print(f"TensorFlow ModelServer: {VERSION}\nTensorFlow Library: {tf.__version__}")
        return 0
    log.warning("This is the TF Serving STAND-IN, a test fixture; it is not TensorFlow Serving.")
    return serve(options)


if __name__ == "__main__":
    sys.exit(main())
