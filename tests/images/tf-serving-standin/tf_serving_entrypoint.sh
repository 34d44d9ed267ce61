#!/bin/bash
# The official tensorflow/serving image's entrypoint, as it is: the shell does
# not `exec`. As PID 1 (no `--init`) it ignores SIGTERM, so `docker stop`
# kills the server after the stop timeout; with `--init` the shell dies on
# SIGTERM and the server with the container, at once.
tensorflow_model_server --port=8500 --rest_api_port=8501 \
  --model_name="${MODEL_NAME}" --model_base_path="${MODEL_BASE_PATH}/${MODEL_NAME}" \
  "$@"
