"""The serving API on protos: what the gRPC services, the REST handlers and warmup call.

Each method takes and returns the tensorflow-serving-api request/response
messages and raises ServingError with TF Serving's codes and messages.
"""

from __future__ import annotations

import logging

from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    input_pb2,
    model_pb2,
    predict_pb2,
    prediction_log_pb2,
    regression_pb2,
)

from tf_serving_standin.core import ServerCore
from tf_serving_standin.errors import ServingError, invalid_argument
from tf_serving_standin.servable import Servable
from tf_serving_standin.tensors import to_ndarray, to_tensor_proto

log = logging.getLogger(__name__)


def serialized_examples(request_input: input_pb2.Input) -> list[bytes]:
    """Serialized tf.Examples of an Input; context features are merged as TF Serving does."""
    kind = request_input.WhichOneof("kind")
    if kind == "example_list":
        return [e.SerializeToString() for e in request_input.example_list.examples]
    if kind == "example_list_with_context":
        context = request_input.example_list_with_context.context.SerializeToString()
        return [context + e.SerializeToString() for e in request_input.example_list_with_context.examples]
    return []


def _model_spec(name: str, signature_name: str, version: int) -> model_pb2.ModelSpec:
    spec = model_pb2.ModelSpec(name=name, signature_name=signature_name)
    spec.version.value = version
    return spec


class ServingApi:
    """PredictionService and ModelService logic over a ServerCore."""

    def __init__(self, core: ServerCore) -> None:
        self.core = core

    def _servable(self, request, servable: Servable | None) -> Servable:
        if servable is not None:
            return servable
        if not request.HasField("model_spec"):
            raise invalid_argument("Missing ModelSpec")
        return self.core.servable(request.model_spec)

    # -- PredictionService ---------------------------------------------------------

    def predict(
        self, request: predict_pb2.PredictRequest, servable: Servable | None = None
    ) -> predict_pb2.PredictResponse:
        """Predict."""
        servable = self._servable(request, servable)
        inputs = {key: to_ndarray(proto) for key, proto in request.inputs.items()}
        signature_name, outputs = servable.predict(
            request.model_spec.signature_name, inputs, list(request.output_filter)
        )
        response = predict_pb2.PredictResponse(
            model_spec=_model_spec(servable.name, signature_name, servable.version)
        )
        signature = servable.signature_defs[signature_name]
        for alias, value in outputs.items():
            response.outputs[alias].CopyFrom(to_tensor_proto(value, signature.outputs[alias].dtype))
        return response

    def classify(
        self, request: classification_pb2.ClassificationRequest, servable: Servable | None = None
    ) -> classification_pb2.ClassificationResponse:
        """Classify."""
        servable = self._servable(request, servable)
        signature_name, rows = servable.classify(
            request.model_spec.signature_name, serialized_examples(request.input)
        )
        response = classification_pb2.ClassificationResponse(
            model_spec=_model_spec(servable.name, signature_name, servable.version)
        )
        for row in rows:
            classifications = response.result.classifications.add()
            for label, score in row:
                cls = classifications.classes.add()
                if label is not None:
                    cls.label = label.decode("utf-8", "replace") if isinstance(label, bytes) else str(label)
                if score is not None:
                    cls.score = score
        return response

    def regress(
        self, request: regression_pb2.RegressionRequest, servable: Servable | None = None
    ) -> regression_pb2.RegressionResponse:
        """Regress."""
        servable = self._servable(request, servable)
        signature_name, values = servable.regress(
            request.model_spec.signature_name, serialized_examples(request.input)
        )
        response = regression_pb2.RegressionResponse(
            model_spec=_model_spec(servable.name, signature_name, servable.version)
        )
        for value in values:
            response.result.regressions.add(value=value)
        return response

    def multi_inference(
        self, request: inference_pb2.MultiInferenceRequest, servable: Servable | None = None
    ) -> inference_pb2.MultiInferenceResponse:
        """MultiInference: classify/regress tasks over one shared input, on one servable."""
        if not request.tasks:
            raise invalid_argument("Expected at least one task")
        names = {t.model_spec.name for t in request.tasks}
        if len(names) != 1:
            raise invalid_argument(
                "All ModelSpecs in a MultiInferenceRequest must access the same model name."
            )
        if len({t.model_spec.signature_name for t in request.tasks}) != len(request.tasks):
            raise invalid_argument("Duplicate evaluation of signature")
        if servable is None:
            servable = self.core.servable(request.tasks[0].model_spec)
        response = inference_pb2.MultiInferenceResponse()
        for task in request.tasks:
            result = response.results.add()
            if task.method_name == "tensorflow/serving/classify":
                sub = classification_pb2.ClassificationRequest(
                    model_spec=task.model_spec, input=request.input
                )
                result.classification_result.CopyFrom(self.classify(sub, servable).result)
            elif task.method_name == "tensorflow/serving/regress":
                sub = regression_pb2.RegressionRequest(model_spec=task.model_spec, input=request.input)
                result.regression_result.CopyFrom(self.regress(sub, servable).result)
            else:
                raise invalid_argument(f"Unsupported signature method_name: {task.method_name}")
            result.model_spec.CopyFrom(
                _model_spec(
                    servable.name, task.model_spec.signature_name or "serving_default", servable.version
                )
            )
        return response

    def get_model_metadata(
        self, request: get_model_metadata_pb2.GetModelMetadataRequest
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        """GetModelMetadata: only the signature_def field exists."""
        if not request.HasField("model_spec"):
            raise invalid_argument("Missing ModelSpec")
        if not request.metadata_field:
            raise invalid_argument("GetModelMetadataRequest must specify at least one metadata_field")
        for field in request.metadata_field:
            if field != "signature_def":
                raise invalid_argument(f"Metadata field {field} is not supported")
        servable = self.core.servable(request.model_spec)
        response = get_model_metadata_pb2.GetModelMetadataResponse(
            model_spec=_model_spec(servable.name, "", servable.version)
        )
        response.model_spec.ClearField("signature_name")
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for key, signature in servable.signature_defs.items():
            signature_map.signature_def[key].CopyFrom(signature)
        response.metadata["signature_def"].Pack(signature_map)
        return response

    # -- ModelService -----------------------------------------------------------------

    def get_model_status(
        self, request: get_model_status_pb2.GetModelStatusRequest
    ) -> get_model_status_pb2.GetModelStatusResponse:
        """GetModelStatus."""
        if not request.HasField("model_spec"):
            raise invalid_argument("Missing ModelSpec")
        return self.core.model_status(request.model_spec)

    # -- warmup -------------------------------------------------------------------------

    def warmup(self, servable: Servable) -> None:
        """Replay the version's warmup records (saved_model_warmup.cc) against it."""
        records = servable.warmup_records()
        for raw in records:
            log_entry = prediction_log_pb2.PredictionLog()
            log_entry.ParseFromString(raw)
            kind = log_entry.WhichOneof("log_type")
            if kind == "predict_log":
                self.predict(log_entry.predict_log.request, servable)
            elif kind == "classify_log":
                self.classify(log_entry.classify_log.request, servable)
            elif kind == "regress_log":
                self.regress(log_entry.regress_log.request, servable)
            elif kind == "multi_inference_log":
                self.multi_inference(log_entry.multi_inference_log.request, servable)
            else:
                raise ServingError("UNIMPLEMENTED", f"Unsupported log_type for warmup: {kind}")
        if records:
            log.info(
                "Finished reading warmup data for model at %s. Number of warmup records read: %d.",
                servable.path,
                len(records),
            )
