#!/bin/bash
# Same command line as the official tensorflow/serving image's entrypoint.
# Unlike the official script this one `exec`s, so the server itself receives
# SIGTERM from `docker stop` (the official image needs `--init` for that).
exec tensorflow_model_server --port=8500 --rest_api_port=8501 \
  --model_name="${MODEL_NAME}" --model_base_path="${MODEL_BASE_PATH}/${MODEL_NAME}" "$@"
