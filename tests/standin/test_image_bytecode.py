"""The stand-in image ships the bytecode of what the server loads at start-up, in place of its source.

Without it every start of the server compiles about 2,400 modules from source (6 CPU seconds on
a two-core VM, at each container start in the tests and the demo); tests/images/tf-serving-
standin/compile-imported compiles them in the build and removes their source (sourceless
bytecode, to keep the image small). This runs the server's own imports in the image, as the
entrypoint does, and lists every loaded module of the venv that was loaded from source: a new
import of the server, or a new TensorFlow pin, that the build step misses shows up here. The
server's own package (a dozen small modules, copied after the venv, with their source) is left out.
"""

from __future__ import annotations

import json

import pytest
from standin_support import docker

pytestmark = pytest.mark.docker

VENV = "/opt/tf-serving-standin"
PROBE = f"""
import json, os, pkgutil, sys
import tf_serving_standin
for module in pkgutil.iter_modules(tf_serving_standin.__path__, "tf_serving_standin."):
    __import__(module.name)
venv = [m for m in list(sys.modules.values()) if (getattr(m, "__file__", None) or "").startswith("{VENV}/")
        and not m.__name__.startswith("tf_serving_standin")]
missing = [m.__file__ for m in venv if m.__file__.endswith(".py")]
sourceless = [m.__file__ for m in venv if m.__file__.endswith(".pyc") and not os.path.exists(m.__file__[:-1])]
print(json.dumps({{"loaded": len(venv), "missing": missing, "sourceless": len(sourceless)}}))
"""


def test_every_module_the_server_loads_has_its_bytecode(standin_image):
    result = docker(
        "run", "--rm", "--entrypoint", f"{VENV}/bin/python3", "-e", "TF_CPP_MIN_LOG_LEVEL=3",
        standin_image, "-c", PROBE,
    )  # fmt: skip
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["loaded"] > 1000, found  # TensorFlow's import was in the probe
    missing = found["missing"]
    assert missing == [], f"{len(missing)} modules loaded from source: {missing[:20]}"
    assert found["sourceless"] > 1000, found
