"""Atomic file writes: write to a temp file in the destination folder, then rename over the target.

A reader, a crash, Ctrl-C or a SIGTERM (the CLIs turn it into an exit) never leaves a half-written output or a temp
file behind; the previous file (if any) survives a failed write untouched. Errors name the user's path, not the
hidden temp file.
"""
from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path

from madf.common.errors import OutputError

# Errors of the destination itself, whatever call inside the write met them: they name the user's path.
STORAGE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO, errno.EACCES, errno.EPERM}


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on any error it is removed."""
    path = Path(path)
    if path.exists() and not path.is_file():   # renaming over a FIFO or a device node would replace it
        raise OutputError(f"cannot write {path}: it is not a regular file (a FIFO, a device or a socket)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # a short temp name: the target's own name may already be at the file system's limit
        fd, tmp = tempfile.mkstemp(prefix=".madf-", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror}") from None
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~umask())  # mkstemp makes 0600; give outputs the usual permissions
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        if str(tmp) in str(exc) or exc.filename == tmp or (exc.filename is None and exc.errno in STORAGE_ERRORS):
            raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def umask() -> int:
    """The process's umask (os.umask can only be read by setting it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask
