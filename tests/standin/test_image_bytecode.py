"""The stand-in image ships the bytecode of what the server loads at start-up.

Without it every start of the server compiles about 2,500 modules from source (6 CPU seconds on
a two-core VM, at each container start in the tests and the demo); tests/images/tf-serving-
standin/compile-imported compiles them in the build. This runs the server's own imports in the
image, as the entrypoint does, and lists every loaded module of the venv that has no bytecode
beside it: a new import of the server, or a new TensorFlow pin, that the build step misses
shows up here. The server's own package (a dozen small modules, copied after the venv) is left out.
"""

from __future__ import annotations

import json

import pytest
from standin_support import docker

pytestmark = pytest.mark.docker

VENV = "/opt/tf-serving-standin"
PROBE = f"""
import importlib.util, json, os, pkgutil, sys
import tf_serving_standin
for module in pkgutil.iter_modules(tf_serving_standin.__path__, "tf_serving_standin."):
    __import__(module.name)
loaded = [m for m in list(sys.modules.values()) if (getattr(m, "__file__", None) or "").endswith(".py")]
venv = [m for m in loaded if m.__file__.startswith("{VENV}/")
        and not m.__name__.startswith("tf_serving_standin")]
missing = [m.__file__ for m in venv if not os.path.exists(importlib.util.cache_from_source(m.__file__))]
print(json.dumps({{"loaded": len(venv), "missing": missing}}))
"""


def test_every_module_the_server_loads_has_its_bytecode(standin_image):
    result = docker(
        "run", "--rm", "--entrypoint", f"{VENV}/bin/python3", "-e", "TF_CPP_MIN_LOG_LEVEL=3",
        standin_image, "-c", PROBE,
    )  # fmt: skip
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["loaded"] > 1000, found  # TensorFlow's import was in the probe
    missing = found["missing"]
    assert missing == [], f"{len(missing)} modules without bytecode: {missing[:20]}"
