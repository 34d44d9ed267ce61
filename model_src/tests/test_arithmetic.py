"""Every signature against numpy float32: signs, zeros, overflow, NaN/Inf, bad shapes, bad examples."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from model_src.validate import LoadedModel
from model_src.warmup import make_example, make_input

NAN, INF = np.nan, np.inf
F32_MAX = float(np.finfo(np.float32).max)
F32_NORMAL_MIN = float(np.finfo(np.float32).tiny)
F32_SUBNORMAL = float(np.finfo(np.float32).smallest_subnormal)

CASES = {
    "negative": ([-1.5, -2.0, 3.0, -7.25], [-2.5, 4.0, -8.0, -0.75]),
    "zero": ([0.0, -0.0, 0.0, 5.0, -0.0], [0.0, 0.0, -0.0, -5.0, -0.0]),
    "large": ([F32_MAX, -F32_MAX, 3e38, 1e30, 1e20, F32_MAX], [F32_MAX, -F32_MAX, -3e38, 1e30, -1e20, -1.0]),
    "tiny": (
        [F32_NORMAL_MIN, F32_NORMAL_MIN, 1e-30, 1e-25],
        [F32_NORMAL_MIN, -F32_NORMAL_MIN, 1e-30, -1e-25],
    ),
    "nan_inf": ([NAN, 1.0, INF, INF, -INF, INF, 0.0, NAN], [1.0, NAN, INF, -INF, -INF, 0.0, INF, NAN]),
    "empty": ([], []),
}
NUMPY = {"add": np.add, "subtract": np.subtract, "multiply": np.multiply, "serving_default": np.add}


def _f32(values: list[float]) -> np.ndarray:
    return np.array(values, dtype=np.float32)


def _expect_equal(actual: np.ndarray, expected: np.ndarray) -> None:
    """Same shape, dtype and values; NaN where numpy has NaN; signed zeros and infinities kept."""
    assert actual.dtype == expected.dtype
    assert actual.shape == expected.shape
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    np.testing.assert_array_equal(np.signbit(actual), np.signbit(expected))
    np.testing.assert_array_equal(actual, expected)  # NaN == NaN for this assertion


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("signature_name", sorted(NUMPY))
def test_predict_matches_numpy(loaded_model: LoadedModel, signature_name: str, case: str) -> None:
    a, b = (_f32(values) for values in CASES[case])
    with np.errstate(all="ignore"):
        expected = NUMPY[signature_name](a, b)
    _expect_equal(loaded_model.predict(signature_name, a, b), expected)


def test_overflow_and_nan_really_occur(loaded_model: LoadedModel) -> None:
    """The cases above do reach ±inf and NaN, so the comparisons are not vacuous."""
    a, b = _f32([F32_MAX, INF, INF]), _f32([F32_MAX, -INF, 0.0])
    assert loaded_model.predict("add", a, b).tolist()[0] == INF
    assert np.isnan(loaded_model.predict("add", a, b)[1])
    assert np.isnan(loaded_model.predict("multiply", a, b)[2])
    assert loaded_model.predict("subtract", _f32([-F32_MAX]), _f32([F32_MAX]))[0] == -INF


def test_subnormal_values_flush_to_zero(loaded_model: LoadedModel) -> None:
    """The one documented difference from numpy: TensorFlow's CPU kernels (and so TF Serving)
    flush subnormal float32 inputs and results to zero."""
    a, b = _f32([F32_SUBNORMAL, F32_NORMAL_MIN]), _f32([0.0, 0.5])
    assert np.multiply(a, b)[1] > 0  # numpy keeps the subnormal product
    assert loaded_model.predict("add", a, b)[0] == 0.0
    assert loaded_model.predict("multiply", a, b)[1] == 0.0


@pytest.mark.parametrize("lengths", [(3, 2), (3, 1), (1, 3), (0, 1)])
@pytest.mark.parametrize("signature_name", sorted(NUMPY))
def test_mismatched_lengths_rejected(loaded_model: LoadedModel, signature_name: str, lengths: tuple) -> None:
    a, b = np.ones(lengths[0], np.float32), np.ones(lengths[1], np.float32)
    with pytest.raises(tf.errors.InvalidArgumentError, match="same length"):
        loaded_model.predict(signature_name, a, b)


@pytest.mark.parametrize("shapes", [((2, 2), (2, 2)), ((4,), (2, 2)), ((), ())])
def test_non_vector_inputs_rejected(loaded_model: LoadedModel, shapes: tuple) -> None:
    a, b = np.ones(shapes[0], np.float32), np.ones(shapes[1], np.float32)
    with pytest.raises((ValueError, tf.errors.InvalidArgumentError)):
        loaded_model.predict("add", a, b)


@pytest.mark.parametrize("signature_name", sorted(NUMPY))
def test_non_vector_inputs_rejected_inside_the_graph(loaded_model: LoadedModel, signature_name: str) -> None:
    """Feed inputs of unknown shape past Python's feed check: the graph itself refuses a matrix.

    TF Serving feeds tensors from C++ without checking them against the signature's shape,
    so the [-1] contract must hold inside the graph.
    """
    signature = loaded_model.signature_defs[signature_name]
    graph = tf.Graph()
    with graph.as_default():
        a = tf.compat.v1.placeholder(tf.float32, shape=None)
        b = tf.compat.v1.placeholder(tf.float32, shape=None)
        (result,) = tf.graph_util.import_graph_def(
            loaded_model.graph.as_graph_def(),
            input_map={signature.inputs["a"].name: a, signature.inputs["b"].name: b},
            return_elements=[signature.outputs["result"].name],
        )
    with tf.compat.v1.Session(graph=graph) as session:
        vector = np.ones(4, np.float32)
        assert session.run(result, {a: vector, b: vector}).shape == (4,)
        with pytest.raises(tf.errors.InvalidArgumentError):
            session.run(result, {a: np.ones((2, 2), np.float32), b: np.ones((2, 2), np.float32)})


@pytest.mark.parametrize("case", sorted(CASES))
def test_classify_matches_numpy_comparisons(loaded_model: LoadedModel, case: str) -> None:
    a, b = (_f32(values) for values in CASES[case])
    outputs = loaded_model.run_examples("classify", make_input(a.tolist(), b.tolist()))
    expected_scores = np.stack([np.less(a, b), np.equal(a, b), np.greater(a, b)], axis=-1).astype(np.float32)
    _expect_equal(outputs["scores"], expected_scores.reshape(len(a), 3))
    assert outputs["classes"].tolist() == [[b"less", b"equal", b"greater"]] * len(a)


def test_classify_labels(loaded_model: LoadedModel) -> None:
    a, b = [1.0, 2.0, 3.0, NAN, INF, -0.0], [2.0, 2.0, 2.0, 1.0, INF, 0.0]
    outputs = loaded_model.run_examples("classify", make_input(a, b))
    top = [
        row_classes[int(np.argmax(row_scores))].decode() if row_scores.max() == 1.0 else None
        for row_classes, row_scores in zip(outputs["classes"], outputs["scores"], strict=True)
    ]
    assert top == ["less", "equal", "greater", None, "equal", "equal"]


@pytest.mark.parametrize("case", sorted(CASES))
def test_regress_is_a_plus_b(loaded_model: LoadedModel, case: str) -> None:
    a, b = (_f32(values) for values in CASES[case])
    outputs = loaded_model.run_examples("regress", make_input(a.tolist(), b.tolist()))
    with np.errstate(all="ignore"):
        _expect_equal(outputs["outputs"], np.add(a, b))


def _example_with(features: dict[str, tf.train.Feature]) -> bytes:
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


BAD_EXAMPLES = {
    "missing_b": _example_with({"a": tf.train.Feature(float_list=tf.train.FloatList(value=[1.0]))}),
    "int_feature": _example_with(
        {
            "a": tf.train.Feature(int64_list=tf.train.Int64List(value=[1])),
            "b": tf.train.Feature(float_list=tf.train.FloatList(value=[1.0])),
        }
    ),
    "two_values": _example_with(
        {
            "a": tf.train.Feature(float_list=tf.train.FloatList(value=[1.0, 2.0])),
            "b": tf.train.Feature(float_list=tf.train.FloatList(value=[1.0])),
        }
    ),
    "not_an_example": b"this is not a tf.Example",
}


@pytest.mark.parametrize("bad", sorted(BAD_EXAMPLES))
@pytest.mark.parametrize("signature_name", ["classify", "regress"])
def test_bad_examples_rejected(loaded_model: LoadedModel, signature_name: str, bad: str) -> None:
    good = make_example(1.0, 2.0).SerializeToString()
    serialized = np.array([good, BAD_EXAMPLES[bad]], dtype=object)
    with pytest.raises(tf.errors.InvalidArgumentError):
        loaded_model.run(signature_name, {"inputs": serialized})
