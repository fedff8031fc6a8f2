"""Replacing a file so that a crash or power cut leaves the old content or the new, never a mix.

One way for every file the collection keeps (vswitchd's state, the declared networks, the MAC
registry, the host's resolv.conf): write a temporary file in the same directory, fsync it, rename it
over the target, fsync the directory (so the rename itself survives a crash). A failure on the way
removes the temporary file and re-raises: the target is untouched.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from typing import Optional, Union


def fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write(path: str, data: Union[str, bytes], *, mode: int = 0o644, tmp: Optional[str] = None,
          before_replace: Optional[Callable[[], None]] = None,
          replace: Optional[Callable[[str, str], None]] = None) -> None:
    """Atomically make ``path`` hold ``data``.

    ``tmp``: the temporary file's path (default: ``.<name>.<pid>.tmp`` beside the target), for callers
    that sweep what killed writers left; ``before_replace``: runs just before the rename (the
    declaration store keeps its last good copy there); ``replace``: how the temporary file takes
    the target's place (default ``os.replace``; resolv.conf's writer falls back to rewriting a
    bind-mounted file).
    """
    directory = os.path.dirname(os.path.abspath(path))
    tmp = tmp or os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    body = data.encode("utf-8") if isinstance(data, str) else data
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        try:
            view = memoryview(body)
            while view:
                view = view[os.write(fd, view):]
            os.fchmod(fd, mode)   # the umask may have narrowed it
            os.fsync(fd)
        finally:
            os.close(fd)
        if before_replace is not None:
            before_replace()
        (replace or os.replace)(tmp, path)   # looked up at call time: tests stand in for os.replace
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(directory)
