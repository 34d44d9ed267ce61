"""A TEST FIXTURE: a calculator version that loads and answers like the real one, but adds wrongly.

The release drill (molecule/stack/tests/test_release.py) needs a version that TF Serving loads
without complaint and whose answers are wrong, to prove that shadow traffic catches it before any
user sees it. The production export path (model_src.export) validates every answer against
model_src.reference and would refuse this one; so the fixture builds it here, on the same graph
code with ``add`` swapped for ``a + b + 1``, and copies the good version's warmup requests.

    python tests/drills/faulty_export.py GOOD_VERSION_DIR NEW_VERSION_DIR
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def export_faulty(good: Path, target: Path) -> Path:
    """Write the faulty version to ``target`` (which must not exist) and return it."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path.insert(0, str(REPO_ROOT))
    import tensorflow as tf

    from model_src import calculator

    def wrong_add(a, b, name=None):
        return tf.add(tf.add(a, b), tf.constant(1.0), name=name)

    calculator._OPERATIONS["add"] = wrong_add  # this process only: the fixture's one fault
    staging = target.with_name(f".{target.name}.faulty")
    calculator.save_calculator(staging)
    shutil.copytree(good / "assets.extra", staging / "assets.extra")
    staging.rename(target)
    return target


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    print(export_faulty(Path(sys.argv[1]), Path(sys.argv[2])))
