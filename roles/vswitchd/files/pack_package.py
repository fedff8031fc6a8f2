# Copyright (c) 2026, openvif developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pack a Python package directory into a reproducible tar (run on the controller by the role).

Same sources -> byte-identical archive (sorted names, mtime 0, root-owned, fixed modes), so the
role's copy of it to the host is unchanged on a rerun and the daemon is not restarted for
nothing. Byte code and caches are left out: the host compiles its own.

    pack_package.py SOURCE_DIR ARCHIVE
"""
from __future__ import annotations

import io
import os
import sys
import tarfile

SKIP_DIRS = {"__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache"}
SKIP_SUFFIXES = (".pyc", ".pyo", ".swp", "~")


def members(source: str):
    for top, dirs, files in os.walk(source):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith("."))
        rel_top = os.path.relpath(top, source)
        if rel_top != ".":
            yield rel_top, None
        for name in sorted(files):
            if name.startswith(".") or name.endswith(SKIP_SUFFIXES):
                continue
            path = os.path.join(top, name)
            yield os.path.normpath(os.path.join(rel_top, name)), path


def pack(source: str, archive: str) -> int:
    if not os.path.isfile(os.path.join(source, "__init__.py")):
        sys.stderr.write(f"{source} is not a Python package (no __init__.py)\n")
        return 2
    buf = io.BytesIO()
    count = 0
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for rel, path in members(source):
            info = tarfile.TarInfo(rel)
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            if path is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
                continue
            with open(path, "rb") as handle:
                data = handle.read()
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
            count += 1
    os.makedirs(os.path.dirname(os.path.abspath(archive)), exist_ok=True)
    tmp = f"{archive}.{os.getpid()}.tmp"
    with open(tmp, "wb") as handle:
        handle.write(buf.getvalue())
    os.replace(tmp, archive)
    print(f"{count} files from {source}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.stderr.write(__doc__)
        sys.exit(2)
    sys.exit(pack(sys.argv[1], sys.argv[2]))
