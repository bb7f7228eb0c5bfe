"""Atomic file writes: a kill at any moment leaves the old file or the new one, never a truncated file that loads
as something else (a shorter OBJ, a cut PNG, an empty GIF).

Each write goes to a hidden temporary name in the target's directory (same file system, so the rename is atomic),
is flushed to disk (fsync) and renamed over the target (``os.replace``); the directory is flushed after the rename.
A kill leaves at most a stale temporary file (:func:`is_temp_name`), which the next write of the same target
replaces.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "commit", "is_temp_name", "temp_name", "write_bytes_atomic", "write_text_atomic"]

_TMP_MARK = ".tmp"


def temp_name(path: Path) -> Path:
    """``dir/.stem.tmp.ext``: hidden, beside the target, with the target's extension, so writers that choose the
    format by extension (PIL, imageio, :func:`pgc_fast.mesh.save_mesh`) write the right one."""
    return path.with_name(f".{path.stem}{_TMP_MARK}{path.suffix}")


def is_temp_name(name: str) -> bool:
    """Whether ``name`` is a temporary name of this module (or a staging directory named the same way)."""
    return name.startswith(".") and _TMP_MARK in name


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def commit(tmp: Path, path: Path) -> None:
    """Flush ``tmp`` to disk, rename it over ``path``, then flush the directory entry (best effort: some file
    systems refuse to fsync a directory)."""
    _fsync(tmp)
    os.replace(tmp, path)
    with contextlib.suppress(OSError):
        _fsync(path.parent)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s new content to; on success it replaces ``path`` atomically, on
    an exception it is removed and ``path`` is left as it was."""
    target = Path(path)
    tmp = temp_name(target)
    try:
        yield tmp
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    commit(tmp, target)


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns ``path``."""
    return write_bytes_atomic(path, text.encode("utf-8"))
