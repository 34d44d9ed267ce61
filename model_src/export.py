"""Export the calculator as a new version under a TF Serving model base.

Usage: ``python -m model_src.export --model-base DIR --name NAME [--version N] [--force]``.

The SavedModel and its warmup file are built in a hidden staging directory beside the
versions, validated there (reloaded, every signature run against numpy, method names
checked, warmup replayed) and only then renamed into ``DIR/NAME/N`` in one step.
Arguments and the target directory are checked before TensorFlow is imported, so user
errors are quick and print one line.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from model_src.versions import (
    MAX_VERSION,
    VersionError,
    make_staging_dir,
    next_version,
    parse_version,
    prepare_model_dir,
    publish_new,
    publish_replace,
    remove_tree,
)

#: How many higher versions an auto-numbered export tries when another export takes its number.
_AUTO_VERSION_ATTEMPTS = 20

EXIT_USAGE = 2
EXIT_EXPORT_ERROR = 1
EXIT_VALIDATION_FAILED = 3


class ExportError(Exception):
    """A user-facing export failure: bad name/version, existing version, unwritable path."""


def _check_version(version: int | None) -> int | None:
    if version is None:
        return None
    if isinstance(version, bool) or not isinstance(version, int) or not 0 <= version <= MAX_VERSION:
        raise ExportError(f"version must be an integer from 0 to {MAX_VERSION}, got {version!r}")
    return version


def _check_free(model_dir: Path, name: str, version: int, force: bool) -> None:
    """Refuse a taken version (unless force), and any spelling TF Serving reads as the same number."""
    spellings = [path.name for path in model_dir.iterdir() if path.name.isascii() and path.name.isdigit()]
    taken = [spelling for spelling in spellings if int(spelling) == version]
    if taken and not force:
        raise ExportError(f"version {version} of {name} already exists in {model_dir}; --force replaces it")
    if any(spelling != str(version) for spelling in taken):
        raise ExportError(f"version {version} of {name} exists in {model_dir} as {taken}; remove it first")


def export_model(
    model_base: str | os.PathLike[str], name: str, version: int | None = None, force: bool = False
) -> Path:
    """Export the calculator to ``model_base/name/version`` and return that directory.

    version defaults to one more than the highest existing version (1 for a new model).
    An existing version is replaced only with force=True, atomically. Raises ExportError
    for user errors and model_src.validate.ValidationError if the model misbehaves.
    """
    version = _check_version(version)
    try:
        model_dir = prepare_model_dir(Path(model_base), name)
    except VersionError as error:
        raise ExportError(str(error)) from None
    if version is not None:
        _check_free(model_dir, name, version, force)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from model_src.calculator import save_calculator  # TensorFlow loads only when needed
    from model_src.validate import validate_export
    from model_src.warmup import write_warmup

    try:
        staging = make_staging_dir(model_dir)
    except VersionError as error:
        raise ExportError(str(error)) from None
    try:
        built = staging / "saved_model"
        save_calculator(built)
        write_warmup(built, name)
        validate_export(built)
        return _publish(built, staging, model_dir, name, version, force)
    finally:
        remove_tree(staging)


def _publish(
    built: Path, staging: Path, model_dir: Path, name: str, version: int | None, force: bool
) -> Path:
    if version is not None:
        target = model_dir / str(version)
        try:
            if force:
                publish_replace(built, target, staging / "retired")
            else:
                publish_new(built, target)
        except FileExistsError:
            raise ExportError(f"version {version} of {name} already exists in {model_dir}") from None
        except OSError as error:
            raise ExportError(f"cannot publish {target}: {error.strerror}") from None
        return target
    candidate = next_version(model_dir)
    for _attempt in range(_AUTO_VERSION_ATTEMPTS):
        target = model_dir / str(candidate)
        try:
            publish_new(built, target)
        except FileExistsError:
            candidate = max(candidate + 1, next_version(model_dir))
            continue
        except OSError as error:
            raise ExportError(f"cannot publish {target}: {error.strerror}") from None
        return target
    raise ExportError(f"could not find a free version number in {model_dir}")


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, without the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"export: error: {message}\n")


def _version_argument(text: str) -> int:
    try:
        return parse_version(text)
    except VersionError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser of ``python -m model_src.export``."""
    parser = _Parser(
        prog="python -m model_src.export",
        description="Export the calculator model as a new TF Serving version: MODEL_BASE/NAME/VERSION.",
    )
    parser.add_argument(
        "--model-base", required=True, type=Path, help="directory holding one directory per model"
    )
    parser.add_argument("--name", required=True, help="model name (the directory under --model-base)")
    parser.add_argument(
        "--version",
        type=_version_argument,
        default=None,
        help="version number (default: highest existing + 1)",
    )
    parser.add_argument("--force", action="store_true", help="replace an existing version (atomically)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the process exit status."""
    args = build_parser().parse_args(argv)
    try:
        version_dir = export_model(args.model_base, args.name, args.version, args.force)
    except ExportError as error:
        print(f"export: error: {error}", file=sys.stderr)
        return EXIT_EXPORT_ERROR
    except Exception as error:
        from model_src.validate import ValidationError

        if not isinstance(error, ValidationError):
            raise
        print(
            f"export: error: the exported model failed validation, nothing was published: {error}",
            file=sys.stderr,
        )
        return EXIT_VALIDATION_FAILED
    print(version_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
