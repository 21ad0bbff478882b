"""Atomic file-system steps: write a file or a directory beside its destination, then rename.

At every instant the destination holds one complete version (the old one or the new one), never
a half-written one; on the same file system `os.replace` is atomic (POSIX rename(2)).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def write_text_atomically(path: Path, text: str) -> Path:
    """Write `text` (UTF-8) to a temporary sibling of `path`, then rename it into place.

    Raises OSError from the file system (read-only, full disk); the temporary file is removed.
    """
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def move_into_place(staged: Path, out_dir: Path, overwrite: bool) -> None:
    """Rename the finished directory `staged` to `out_dir`; an old one is moved aside first, then
    removed, so one complete version exists at every instant."""
    if out_dir.exists() and overwrite:
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        os.replace(out_dir, old)
        os.replace(staged, out_dir)
        shutil.rmtree(old, ignore_errors=True)
        return
    os.replace(staged, out_dir)
