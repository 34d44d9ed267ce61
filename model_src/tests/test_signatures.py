"""The signature table as TF Serving reads it from saved_model.pb (what saved_model_cli shows)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import saved_model_pb2

# The contract, written out here on purpose rather than imported from model_src.signatures.
PREDICT = "tensorflow/serving/predict"
EXPECTED_TABLE = {
    "add": (PREDICT, {"a": "DT_FLOAT", "b": "DT_FLOAT"}, {"result": "DT_FLOAT"}),
    "subtract": (PREDICT, {"a": "DT_FLOAT", "b": "DT_FLOAT"}, {"result": "DT_FLOAT"}),
    "multiply": (PREDICT, {"a": "DT_FLOAT", "b": "DT_FLOAT"}, {"result": "DT_FLOAT"}),
    "serving_default": (PREDICT, {"a": "DT_FLOAT", "b": "DT_FLOAT"}, {"result": "DT_FLOAT"}),
    "classify": (
        "tensorflow/serving/classify",
        {"inputs": "DT_STRING"},
        {"classes": "DT_STRING", "scores": "DT_FLOAT"},
    ),
    "regress": ("tensorflow/serving/regress", {"inputs": "DT_STRING"}, {"outputs": "DT_FLOAT"}),
}


def _meta_graph(version_dir: Path) -> saved_model_pb2.MetaGraphDef:
    saved_model = saved_model_pb2.SavedModel.FromString((version_dir / "saved_model.pb").read_bytes())
    assert len(saved_model.meta_graphs) == 1
    return saved_model.meta_graphs[0]


def _table(meta_graph: saved_model_pb2.MetaGraphDef) -> dict[str, tuple[str, dict[str, str], dict[str, str]]]:
    def dtypes(infos: object) -> dict[str, str]:
        return {key: types_pb2.DataType.Name(info.dtype) for key, info in infos.items()}

    return {
        name: (signature.method_name, dtypes(signature.inputs), dtypes(signature.outputs))
        for name, signature in meta_graph.signature_def.items()
    }


def test_signature_and_method_name_table(version_dir: Path) -> None:
    assert _table(_meta_graph(version_dir)) == EXPECTED_TABLE


def test_serve_tag(version_dir: Path) -> None:
    assert list(_meta_graph(version_dir).meta_info_def.tags) == ["serve"]


@pytest.mark.parametrize("signature_name", sorted(EXPECTED_TABLE))
def test_every_tensor_has_a_batch_dimension(version_dir: Path, signature_name: str) -> None:
    signature = _meta_graph(version_dir).signature_def[signature_name]
    for info in [*signature.inputs.values(), *signature.outputs.values()]:
        assert info.tensor_shape.dim[0].size == -1, info


@pytest.mark.parametrize("signature_name", ["add", "subtract", "multiply", "serving_default"])
def test_predict_inputs_are_float_vectors(version_dir: Path, signature_name: str) -> None:
    signature = _meta_graph(version_dir).signature_def[signature_name]
    for key in ("a", "b"):
        assert [dim.size for dim in signature.inputs[key].tensor_shape.dim] == [-1]


def test_classify_outputs_are_batch_by_three(version_dir: Path) -> None:
    signature = _meta_graph(version_dir).signature_def["classify"]
    for key in ("classes", "scores"):
        assert [dim.size for dim in signature.outputs[key].tensor_shape.dim] == [-1, 3]


def test_version_directory_layout(version_dir: Path) -> None:
    files = sorted(str(path.relative_to(version_dir)) for path in version_dir.rglob("*"))
    assert files == ["assets.extra", "assets.extra/tf_serving_warmup_requests", "saved_model.pb", "variables"]
