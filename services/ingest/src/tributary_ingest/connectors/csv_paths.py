"""Where `csv` may read: real paths under `TRIBUTARY_CSV_ROOTS`, never hidden, checked again on what was opened."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..sdk import Refused

ROOTS_ENV = "TRIBUTARY_CSV_ROOTS"


class OutsideRoots(Refused):
    pass


def contained(real: str, roots: tuple[Path, ...]) -> str | None:
    """Why the real path `real` may not be read (outside every root, or hidden below one), None when it may."""
    path = Path(real)
    for root in roots:
        if path == root or path.is_relative_to(root):
            if any(part.startswith(".") for part in path.relative_to(root).parts):
                return f"{real!r} is hidden (a dot file or folder): never read"
            return None
    return f"{real!r} is outside {ROOTS_ENV}"


def list_files(folder: Path, pattern: str, roots: tuple[Path, ...]) -> list[Path]:
    real = os.path.realpath(folder)  # symlinks resolved: what a listing of `folder` would really read
    why = contained(real, roots)
    if why is not None:
        raise OutsideRoots(f"CSV folder {str(folder)!r} refused: {why}")
    if not os.path.isdir(real):
        raise FileNotFoundError(f"CSV folder {str(folder)!r} does not exist")
    return sorted(p for p in Path(real).glob(pattern) if not p.name.startswith(".") and p.is_file())


def file_size(path: Path) -> int:
    return path.stat().st_size


def read_at(path: Path, offset: int, n: int, roots: tuple[Path, ...]) -> bytes:
    # Non-blocking, so that a FIFO swapped in after the listing cannot hang the thread; checked on what was opened.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as f:
        why = contained(_opened_path(fd, path), roots)
        if why is None and not stat.S_ISREG(os.fstat(fd).st_mode):
            why = "not a regular file"
        if why is not None:
            raise OutsideRoots(f"{path.name}: refused: {why}")
        f.seek(offset)
        return f.read(n)


def _opened_path(fd: int, path: Path) -> str:
    """The real path of an open file: from the kernel where it says (no race with a symlink swapped after the
    open), else resolved from its name."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return os.path.realpath(path)
