"""Where vswitchd keeps its state and listens, and where the declared networks are kept.

Overridable so several hosts can share one machine (the lab, the tests).
Environment variables (read at call time): ``VSWITCHD_STATE_FILE``, ``VSWITCHD_SOCKET``,
``OPENVIF_STATE_DIR`` (the declaration that ``vswitch.boot`` restores; modules and boot read the same).
"""
from __future__ import annotations

import os

STATE_DIR = "/var/lib/openvif"
STATE_FILE = STATE_DIR + "/vswitchd.json"
SOCKET = "/run/openvif/vswitchd.sock"
STATE_DIR_VARIABLE = "OPENVIF_STATE_DIR"
# The systemd unit that restores the declaration at boot (installed by the boot role).
BOOT_UNIT = "openvif-boot.service"
UNIT_DIRS = ("/etc/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system")


def state_file() -> str:
    return os.environ.get("VSWITCHD_STATE_FILE") or STATE_FILE


def socket_path() -> str:
    return os.environ.get("VSWITCHD_SOCKET") or SOCKET


def state_dir() -> str:
    return os.environ.get(STATE_DIR_VARIABLE) or STATE_DIR


def boot_unit_installed() -> bool:
    return any(os.path.exists(os.path.join(directory, BOOT_UNIT)) for directory in UNIT_DIRS)


def socket_configured() -> bool:
    """True when the socket was named for this run (``VSWITCHD_SOCKET``), not vswitchd's default."""
    return bool(os.environ.get("VSWITCHD_SOCKET"))
