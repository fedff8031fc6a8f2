"""Deterministic crash points, for tests that kill vswitchd at every step boundary of a transaction.

``VSWITCHD_CRASH_AT=POINT`` (or ``POINT@N``: the N-th time it is reached) makes the daemon
SIGKILL itself there, exactly as a ``kill -9`` or an OOM kill would stop it: no cleanup, no
reply. Unset (every production run) it costs one comparison per point. A name that is not
a point is refused at start, so a test cannot silently inject nothing.
"""
from __future__ import annotations

import os
import signal
from typing import Optional

ENV = "VSWITCHD_CRASH_AT"
POINTS = (
    "transact.validated",         # the new configuration is computed; nothing touched yet
    "transact.internal-created",  # after each new bridge's internal TAP is created
    "transact.settings-changed",  # after each existing bridge's MTU/MAC is changed on its device
    "transact.port-opened",       # after each new port's device is created or attached
    "transact.saved",             # the state file holds the new configuration (committed)
    "commit.port-dropped",        # after each deleted port's device is released
    "commit.bridge-dropped",      # after each deleted bridge's internal TAP is released
    "transact.committed",         # the running switch is the new configuration; no reply yet
)


class _Armed:
    def __init__(self, spec: Optional[str]) -> None:
        self.point: Optional[str] = None
        self.countdown = 0
        if not spec:
            return
        point, _sep, nth = spec.partition("@")
        if point not in POINTS:
            raise ValueError(f"{ENV}={spec!r}: {point!r} is not a crash point (one of {', '.join(POINTS)})")
        try:
            self.countdown = int(nth) if nth else 1
        except ValueError:
            raise ValueError(f"{ENV}={spec!r}: {nth!r} after '@' is not a count") from None
        if self.countdown < 1:
            raise ValueError(f"{ENV}={spec!r}: the count after '@' must be at least 1")
        self.point = point


_armed = _Armed(None)


def arm(spec: Optional[str]) -> None:
    """Arm the crash point ``spec`` (from the environment at start); raises ValueError naming a bad one."""
    global _armed
    _armed = _Armed(spec)


def reached(point: str) -> None:
    armed = _armed
    if armed.point is None or armed.point != point:
        return
    armed.countdown -= 1
    if armed.countdown == 0:
        os.kill(os.getpid(), signal.SIGKILL)
