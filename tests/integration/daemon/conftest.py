"""Fixtures for vswitchd integration tests (helpers live in vswitchd_lab.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import pytest
from vswitchd_lab import Daemon


@pytest.fixture
def vswitchd(netlab, tmp_path):
    """Factory: ``vswitchd(ns, fdb_limit=None, name=...)`` -> started Daemon; all stopped afterwards."""
    daemons: list[Daemon] = []

    def make(ns: str, workdir: Optional[Path] = None, **kwargs) -> Daemon:
        daemon = Daemon(ns, workdir or tmp_path, **kwargs)
        daemons.append(daemon)
        return daemon.start()
    try:
        yield make
    finally:
        for daemon in daemons:
            daemon.stop()


@pytest.fixture
def daemons():
    """Daemons a test starts itself (``daemons.append(Daemon(...).start())``), all stopped afterwards."""
    started: list[Daemon] = []
    try:
        yield started
    finally:
        for daemon in started:
            daemon.stop()
