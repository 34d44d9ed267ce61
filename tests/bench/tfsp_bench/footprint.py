"""Web-host footprint: the web tier's venv against a naive install of tensorflow-serving-api."""

from __future__ import annotations

import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .stats import BenchError

VENV = "/opt/calculator-web/venv"
STANDIN_IMAGE = "tfsp/tf-serving-standin:latest"


def _mib(kib: int) -> float:
    return round(kib / 1024, 1)


def web_host_venv(host: str) -> dict:
    """Installed size of the app's venv on a web host, and whether it holds TensorFlow."""
    done = subprocess.run(
        ["docker", "exec", host, "du", "-sk", VENV], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise BenchError(f"cannot size {VENV} on {host}: {done.stderr}")
    listing = subprocess.run(
        ["docker", "exec", host, f"{VENV}/bin/python", "-c",
         "import importlib.metadata as m; print(*sorted(d.metadata['Name'] for d in m.distributions()))"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    return {
        "host": host,
        "mib": _mib(int(done.stdout.split()[0])),
        "distributions": listing,
        "has_tensorflow": any(name.lower().startswith("tensorflow") for name in listing),
    }


def standin_image(image: str = STANDIN_IMAGE) -> dict:
    """Size of the TF Serving stand-in image (a test fixture) that the serving hosts load."""
    done = subprocess.run(
        ["docker", "image", "inspect", "-f", "{{.Size}}", image], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise BenchError(f"cannot size {image}: {done.stderr}")
    return {"image": image, "bytes": int(done.stdout.strip())}


def naive_venv(requirement: str) -> dict:
    """Size of a fresh venv after `pip install <requirement>` (pip's cache is used, if warm)."""
    workdir = Path(tempfile.mkdtemp(prefix="tfsp-naive-venv-"))
    try:
        venv = workdir / "venv"
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        # The controller's interpreter, without the controller's packages.
        subprocess.run(
            [
                str(venv / "bin/python"),
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                requirement,
            ],
            check=True,
        )
        size = subprocess.run(
            ["du", "-sk", str(venv)], capture_output=True, text=True, check=True
        ).stdout.split()[0]
        count = len(list((venv / "lib").glob("python3*/site-packages/*.dist-info")))
        return {
            "requirement": requirement,
            "mib": _mib(int(size)),
            "distributions": count,
            "python": platform.python_version(),
        }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
