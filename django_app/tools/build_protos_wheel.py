"""Build the TF-free ``tfsp-serving-protos`` wheel from the official TensorFlow wheels.

Why this exists: ``tensorflow-serving-api`` depends on all of TensorFlow (gigabytes), yet a
TF Serving client only needs the generated ``*_pb2``/``*_pb2_grpc`` message and stub modules.
This script opens the official ``tensorflow-serving-api`` and ``tensorflow`` wheels (downloaded at
build time, never committed), starts from the client's API modules, follows their imports to the
full closure of generated modules, and packs exactly those files into a small pure-Python wheel
that depends only on ``protobuf`` and ``grpcio``.

Usage: build_protos_wheel.py --serving-wheel W --tensorflow-wheel W --out-dir DIR --version V
"""

from __future__ import annotations

import argparse
import ast
import base64
import hashlib
import re
import sys
import zipfile
from pathlib import Path, PurePosixPath

DIST_NAME = "tfsp-serving-protos"
DIST_STEM = "tfsp_serving_protos"

# The API modules the client imports; everything else follows from their imports.
ROOT_MODULES = [
    f"tensorflow_serving.apis.{name}"
    for name in (
        "classification_pb2",
        "get_model_metadata_pb2",
        "get_model_status_pb2",
        "inference_pb2",
        "input_pb2",
        "model_pb2",
        "model_management_pb2",
        "model_service_pb2",
        "model_service_pb2_grpc",
        "predict_pb2",
        "prediction_service_pb2",
        "prediction_service_pb2_grpc",
        "regression_pb2",
    )
]
OWN_PREFIXES = ("tensorflow.", "tensorflow_serving.", "tsl.", "xla.")
WHEEL_FILE = b"Wheel-Version: 1.0\nGenerator: build_protos_wheel\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
# Fixed timestamp so that two builds from the same inputs give byte-identical wheels.
ZIP_DATE = (2020, 1, 1, 0, 0, 0)


def module_path(module: str) -> str:
    """Return the wheel member path of a module name."""
    return module.replace(".", "/") + ".py"


def imported_modules(source: str) -> set[str]:
    """Return the generated modules (``*_pb2*``) a module's source imports."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                found.add(f"{node.module}.{alias.name}")
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith(OWN_PREFIXES) and "_pb2" in name.rsplit(".", 1)[-1]}


def import_closure(members: dict[str, bytes]) -> dict[str, bytes]:
    """Walk imports from ROOT_MODULES; return {member path: content} of the whole closure."""
    closure: dict[str, bytes] = {}
    pending = list(ROOT_MODULES)
    while pending:
        module = pending.pop()
        path = module_path(module)
        if path in closure:
            continue
        if path not in members:
            raise SystemExit(f"build_protos_wheel: {module} is imported but not in the source wheels")
        closure[path] = members[path]
        pending.extend(imported_modules(members[path].decode("utf-8")))
    return closure


def gencode_versions(closure: dict[str, bytes]) -> set[str]:
    """Return the protobuf gencode versions stamped in the generated modules."""
    pattern = re.compile(rb"^# Protobuf Python Version: (\S+)$", re.MULTILINE)
    return {m.group(1).decode() for content in closure.values() for m in pattern.finditer(content)}


def grpc_generated_versions(closure: dict[str, bytes]) -> set[str]:
    """Return the grpcio versions the ``*_pb2_grpc`` stubs were generated with, if stamped."""
    pattern = re.compile(rb"^GRPC_GENERATED_VERSION = '([^']+)'$", re.MULTILINE)
    return {m.group(1).decode() for content in closure.values() for m in pattern.finditer(content)}


def read_members(wheel: Path, prefixes: tuple[str, ...]) -> dict[str, bytes]:
    """Read the ``.py`` members under the given top-level packages of a wheel."""
    with zipfile.ZipFile(wheel) as archive:
        return {
            name: archive.read(name)
            for name in archive.namelist()
            if name.endswith(".py") and name.startswith(prefixes)
        }


def read_licenses(wheel: Path) -> dict[str, bytes]:
    """Return the license files of a wheel's .dist-info, keyed by a short name."""
    result: dict[str, bytes] = {}
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            parts = PurePosixPath(name).parts
            if len(parts) >= 2 and parts[0].endswith(".dist-info") and "LICENSE" in parts[-1].upper():
                project = parts[0].split("-")[0]
                result[f"{project}-{parts[-1]}"] = archive.read(name)
    return result


def package_inits(closure: dict[str, bytes]) -> dict[str, bytes]:
    """Minimal ``__init__.py`` for every package directory of the closure."""
    inits: dict[str, bytes] = {}
    for path in closure:
        parent = PurePosixPath(path).parent
        while str(parent) != ".":
            inits.setdefault(
                f"{parent}/__init__.py",
                b'"""Generated TF Serving protocol modules only (tfsp-serving-protos); not TensorFlow."""\n',
            )
            parent = parent.parent
    return inits


def metadata(version: str, protobuf_floor: str, grpc_floor: str, source_versions: str) -> str:
    """The wheel's METADATA file."""
    return (
        "Metadata-Version: 2.1\n"
        f"Name: {DIST_NAME}\n"
        f"Version: {version}\n"
        "Summary: TensorFlow Serving gRPC/protobuf client modules without TensorFlow\n"
        "License: Apache-2.0\n"
        "Requires-Python: >=3.9\n"
        f"Requires-Dist: protobuf<8,>={protobuf_floor}\n"
        f"Requires-Dist: grpcio<2,>={grpc_floor}\n"
        "\n"
        "The generated protocol buffer and gRPC stub modules that a TensorFlow Serving client\n"
        f"imports, extracted at build time from the official wheels ({source_versions}).\n"
        "Conflicts with a full TensorFlow installation: install one or the other.\n"
    )


def record_line(path: str, content: bytes) -> str:
    """One RECORD row: path, urlsafe-base64 sha256, size."""
    digest = base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(content)}"


def write_wheel(out_dir: Path, version: str, files: dict[str, bytes], dist_info: dict[str, bytes]) -> Path:
    """Write the wheel with a RECORD; return its path."""
    info_dir = f"{DIST_STEM}-{version}.dist-info"
    entries = dict(sorted(files.items()))
    entries.update({f"{info_dir}/{name}": content for name, content in dist_info.items()})
    record_path = f"{info_dir}/RECORD"
    record = "\n".join([*(record_line(p, c) for p, c in entries.items()), f"{record_path},,"]) + "\n"
    entries[record_path] = record.encode()
    out_dir.mkdir(parents=True, exist_ok=True)
    wheel_path = out_dir / f"{DIST_STEM}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel_path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path, content in entries.items():
            info = zipfile.ZipInfo(path, date_time=ZIP_DATE)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, content)
    return wheel_path


def build(serving_wheel: Path, tensorflow_wheel: Path, out_dir: Path, version: str) -> Path:
    """Build the protos wheel; return its path."""
    members = read_members(serving_wheel, ("tensorflow_serving/",))
    members.update(read_members(tensorflow_wheel, ("tensorflow/", "tsl/", "xla/")))
    closure = import_closure(members)
    gencode = gencode_versions(closure)
    if len(gencode) != 1:
        raise SystemExit(
            f"build_protos_wheel: expected one protobuf gencode version, found {sorted(gencode)}"
        )
    grpc_versions = grpc_generated_versions(closure)
    grpc_floor = max(grpc_versions, default="1.24.3", key=lambda v: tuple(int(p) for p in v.split(".")))
    files = {**package_inits(closure), **closure}
    licenses = read_licenses(serving_wheel) | read_licenses(tensorflow_wheel)
    dist_info = {
        "METADATA": metadata(
            version, gencode.pop(), grpc_floor, f"{serving_wheel.name}, {tensorflow_wheel.name}"
        ).encode(),
        "WHEEL": WHEEL_FILE,
        "top_level.txt": "".join(sorted({p.split("/")[0] + "\n" for p in files})).encode(),
        **{f"licenses/{name}": content for name, content in licenses.items()},
    }
    return write_wheel(out_dir, version, files, dist_info)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serving-wheel", type=Path, required=True)
    parser.add_argument("--tensorflow-wheel", type=Path, required=True)
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--version", required=True)
    args = parser.parse_args(argv)
    wheel = build(args.serving_wheel, args.tensorflow_wheel, args.out_dir, args.version)
    with zipfile.ZipFile(wheel) as archive:
        modules = [n for n in archive.namelist() if "_pb2" in n]
    print(f"{wheel.name}: {len(modules)} generated modules, {wheel.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
