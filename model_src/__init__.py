"""The calculator model served by TensorFlow Serving.

``python -m model_src.export`` builds the tutorial's add/subtract/multiply model and
writes it as a versioned SavedModel that TensorFlow Serving loads, with predict,
classify and regress signatures and a warmup file. Only :mod:`model_src.export` and
:mod:`model_src.calculator` import TensorFlow, and only when they need it.
"""
