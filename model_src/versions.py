"""Version directories under a model base, published atomically.

TF Serving watches ``<model_base>/<name>/`` and treats every child whose name is an
integer as a version. A version is therefore built under a hidden, non-integer
staging name in the same directory (same filesystem) and renamed into place in one
step, so a polling server sees either nothing or a complete version. Linux's
``renameat2`` gives an exclusive rename (never overwrites a version another export
published meanwhile) and an atomic exchange for ``--force`` (the old version is
swapped out, never missing); where it is unavailable a plain rename is used. No
TensorFlow import here.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import shutil
import tempfile
from pathlib import Path

#: Largest version TF Serving accepts (versions are int64).
MAX_VERSION = 2**63 - 1
#: Model names become directory names; keep them to what TF Serving clients use.
MODEL_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
#: A directory name TF Serving reads as a version (ASCII digits; str.isdigit also takes other scripts).
_VERSION_NAME = re.compile(r"[0-9]+")
#: Prefix of staging directories; never an integer, so TF Serving ignores them.
STAGING_PREFIX = ".export-"

_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
_RENAME_EXCHANGE = 2


class VersionError(Exception):
    """A user error about a model name, a version or the model base directory."""


def parse_version(text: str) -> int:
    """Return text as a version number (a non-negative int64) or raise VersionError."""
    if not _VERSION_NAME.fullmatch(text.strip()):
        raise VersionError(f"version must be a non-negative integer, got {text!r}")
    version = int(text)
    if version > MAX_VERSION:
        raise VersionError(f"version must be at most {MAX_VERSION}, got {text}")
    return version


def check_model_name(name: str) -> str:
    """Return name if it is usable as a model directory name, else raise VersionError."""
    if not MODEL_NAME_PATTERN.fullmatch(name):
        raise VersionError(f"model name must match {MODEL_NAME_PATTERN.pattern}, got {name!r}")
    return name


def existing_versions(model_dir: Path) -> list[int]:
    """Return the version numbers taken in model_dir, sorted.

    Every integer-named entry counts, directory or not, so a new export never reuses
    a number a server might already be tracking.
    """
    if not model_dir.is_dir():
        return []
    return sorted(int(child.name) for child in model_dir.iterdir() if _VERSION_NAME.fullmatch(child.name))


def next_version(model_dir: Path) -> int:
    """Return one more than the highest version in model_dir, or 1 when there is none."""
    versions = existing_versions(model_dir)
    return versions[-1] + 1 if versions else 1


def prepare_model_dir(model_base: Path, name: str) -> Path:
    """Create ``model_base/name`` if needed, check it is writable and return it."""
    model_dir = model_base / check_model_name(name)
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise VersionError(f"{model_dir} exists and is not a directory") from None
    except OSError as error:
        raise VersionError(f"cannot create {model_dir}: {error.strerror}") from None
    if not os.access(model_dir, os.W_OK | os.X_OK):
        raise VersionError(f"{model_dir} is not writable")
    return model_dir


def make_staging_dir(model_dir: Path) -> Path:
    """Create a private staging directory next to the versions (same filesystem)."""
    try:
        return Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=model_dir))
    except OSError as error:
        raise VersionError(f"cannot write in {model_dir}: {error.strerror}") from None


def _renameat2(source: Path, target: Path, flags: int) -> bool:
    """Call renameat2(2); return False if this system or filesystem does not support it."""
    function = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if function is None:
        return False
    result = function(_AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(target), ctypes.c_uint(flags))
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(target))


def _fsync_tree(root: Path) -> None:
    """Flush every file and directory under root, so a published version survives a crash."""
    for directory, _subdirs, files in os.walk(root):
        for name in files:
            descriptor = os.open(os.path.join(directory, name), os.O_RDONLY)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
        _fsync_dir(Path(directory))


def _fsync_dir(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def publish_new(built: Path, target: Path) -> None:
    """Rename the built version to target; raise FileExistsError if target exists."""
    _fsync_tree(built)
    if not _renameat2(built, target, _RENAME_NOREPLACE):
        if target.exists():
            raise FileExistsError(errno.EEXIST, "version exists", str(target))
        os.rename(built, target)
    _fsync_dir(target.parent)


def publish_replace(built: Path, target: Path, retired: Path) -> None:
    """Put the built version at target, moving any version already there to retired.

    With renameat2 the two directories are exchanged in one step; otherwise the old
    version is renamed away just before the new one is renamed in.
    """
    _fsync_tree(built)
    if not target.exists():
        publish_new(built, target)
        return
    if _renameat2(built, target, _RENAME_EXCHANGE):
        os.rename(built, retired)
    else:
        os.rename(target, retired)
        os.rename(built, target)
    _fsync_dir(target.parent)


def remove_tree(path: Path) -> None:
    """Remove a staging or retired directory, ignoring one that is already gone."""
    shutil.rmtree(path, ignore_errors=True)
