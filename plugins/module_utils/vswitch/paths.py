"""Where vswitchd keeps its state and listens; overridable so several daemons can run side by side.

Environment variables (read at call time): ``VSWITCHD_STATE_FILE``, ``VSWITCHD_SOCKET``.
"""
from __future__ import annotations

import os

STATE_FILE = "/var/lib/openvif/vswitchd.json"
SOCKET = "/run/openvif/vswitchd.sock"


def state_file() -> str:
    return os.environ.get("VSWITCHD_STATE_FILE") or STATE_FILE


def socket_path() -> str:
    return os.environ.get("VSWITCHD_SOCKET") or SOCKET


def socket_configured() -> bool:
    """True when the socket was named for this run (``VSWITCHD_SOCKET``), not vswitchd's default."""
    return bool(os.environ.get("VSWITCHD_SOCKET"))
