"""Build the calculator graph and save it as a SavedModel with TF Serving's method names.

Why ``tf.compat.v1.saved_model.Builder`` and not ``tf.saved_model.save``: TF2's saver
writes every SignatureDef with method name ``tensorflow/serving/predict``, and TF Serving
only answers Classify and Regress for signatures named ``tensorflow/serving/classify`` /
``tensorflow/serving/regress``. The v1 builder takes SignatureDefs made by TensorFlow's
own ``classification_signature_def`` / ``regression_signature_def`` helpers, which set
the method names and the input/output keys TF Serving requires (``inputs``; ``classes``,
``scores``; ``outputs``) and check their dtypes. Nothing is patched after saving, so
``saved_model.pb`` and ``fingerprint.pb`` stay consistent, and the result is the same
graph + session format TF Serving's own examples use.
"""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf

from model_src.signatures import (
    CLASS_LABELS,
    CLASSIFY_SIGNATURE,
    DEFAULT_SIGNATURE,
    PREDICT_OPERATIONS,
    REGRESS_SIGNATURE,
    predict_operation,
)

v1 = tf.compat.v1

_OPERATIONS = {"add": tf.add, "subtract": tf.subtract, "multiply": tf.multiply}


def _same_shape(a: tf.Tensor, b: tf.Tensor, name: str) -> tuple[tf.Tensor, tf.Tensor]:
    """Return a and b checked to be vectors of one length, so [3] op [1] fails instead of broadcasting.

    The checks run inside the graph, so they hold for every client of TF Serving, not
    only for Python ones that check feeds against the signature.
    """
    a = tf.ensure_shape(a, [None], name=f"{name}_a_is_vector")
    b = tf.ensure_shape(b, [None], name=f"{name}_b_is_vector")
    check = v1.assert_equal(
        tf.shape(a),
        tf.shape(b),
        message=f"{name}: inputs a and b must have the same length",
        name=f"{name}_same_length",
    )
    with tf.control_dependencies([check]):
        return tf.identity(a), tf.identity(b)


def _predict_signature(operation: str, signature_name: str) -> tf.compat.v1.SignatureDef:
    a = v1.placeholder(tf.float32, shape=[None], name=f"{signature_name}_a")
    b = v1.placeholder(tf.float32, shape=[None], name=f"{signature_name}_b")
    checked_a, checked_b = _same_shape(a, b, signature_name)
    result = _OPERATIONS[operation](checked_a, checked_b, name=f"{signature_name}_result")
    return v1.saved_model.predict_signature_def(inputs={"a": a, "b": b}, outputs={"result": result})


def _parse_examples(serialized: tf.Tensor, name: str) -> tuple[tf.Tensor, tf.Tensor]:
    features = v1.io.parse_example(
        serialized,
        {"a": v1.io.FixedLenFeature([], tf.float32), "b": v1.io.FixedLenFeature([], tf.float32)},
        name=f"{name}_parse",
    )
    return features["a"], features["b"]


def _classify_signature() -> tf.compat.v1.SignatureDef:
    serialized = v1.placeholder(tf.string, shape=[None], name="classify_inputs")
    a, b = _parse_examples(serialized, CLASSIFY_SIGNATURE)
    # Columns follow CLASS_LABELS: less, equal, greater. NaN rows score 0 everywhere.
    scores = tf.cast(tf.stack([tf.less(a, b), tf.equal(a, b), tf.greater(a, b)], axis=1), tf.float32)
    labels = tf.constant([list(CLASS_LABELS)], dtype=tf.string)
    classes = tf.tile(labels, [tf.shape(serialized)[0], 1], name="classify_classes")
    scores = tf.identity(scores, name="classify_scores")
    return v1.saved_model.classification_signature_def(examples=serialized, classes=classes, scores=scores)


def _regress_signature() -> tf.compat.v1.SignatureDef:
    serialized = v1.placeholder(tf.string, shape=[None], name="regress_inputs")
    a, b = _parse_examples(serialized, REGRESS_SIGNATURE)
    outputs = tf.add(a, b, name="regress_outputs")
    return v1.saved_model.regression_signature_def(examples=serialized, predictions=outputs)


def build_signature_defs() -> dict[str, tf.compat.v1.SignatureDef]:
    """Add the calculator to the current default graph and return its SignatureDefs by name."""
    signature_defs = {
        name: _predict_signature(predict_operation(name), name)
        for name in (*PREDICT_OPERATIONS, DEFAULT_SIGNATURE)
    }
    signature_defs[CLASSIFY_SIGNATURE] = _classify_signature()
    signature_defs[REGRESS_SIGNATURE] = _regress_signature()
    return signature_defs


def save_calculator(export_dir: Path) -> None:
    """Write the calculator SavedModel (tag ``serve``) to export_dir, which must not exist."""
    tf.get_logger().setLevel("ERROR")  # the v1 builder's deprecation notices are expected here
    graph = tf.Graph()
    with graph.as_default(), v1.Session(graph=graph) as session:
        signature_defs = build_signature_defs()
        builder = v1.saved_model.Builder(str(export_dir))
        builder.add_meta_graph_and_variables(
            session,
            [v1.saved_model.tag_constants.SERVING],
            signature_def_map=signature_defs,
            strip_default_attrs=True,
        )
        builder.save()
