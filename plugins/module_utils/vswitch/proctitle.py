"""The process name the kernel shows (``/proc/PID/comm``): what ``pgrep``, ``ps -e`` and ``top`` print.

vswitchd runs as ``python3 -m vswitch.daemon``, so without this it is listed as ``python3``. Changing
argv[0] instead is no option: Python derives ``sys.executable`` and a venv's prefix from it.
"""
from __future__ import annotations

import ctypes
import ctypes.util

PR_SET_NAME = 15   # <linux/prctl.h>
COMM_LEN = 15      # TASK_COMM_LEN less the terminating NUL: the kernel cuts longer names


def set_name(name: str) -> bool:
    """Name the calling thread (the main thread names the process); False where prctl is unavailable."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return False
    return libc.prctl(PR_SET_NAME, ctypes.c_char_p(name.encode()[:COMM_LEN]), 0, 0, 0) == 0
