# Copyright (c) 2026, openvif developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark-only callback: how long each task took on each host, written as JSON to $FLEET_TIMING_FILE."""
from __future__ import annotations

DOCUMENTATION = r"""
name: fleet_timing
type: aggregate
short_description: Per host and task, the seconds from a worker taking the task to its result (bench/fleet.py)
description:
  - Used by bench/fleet.py. A looped task is one row (all its items), which is what a user waits for.
options: {}
"""

import json
import os
import time

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "fleet_timing"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._started: dict = {}
        self._rows: list = []

    def v2_runner_on_start(self, host, task):
        # Sent by the strategy when a worker process starts on (host, task): the host's own clock for it.
        self._started[(host.get_name(), task._uuid)] = time.monotonic()  # pylint: disable=protected-access

    def _done(self, result, status: str) -> None:
        host = result._host.get_name()  # pylint: disable=protected-access
        task = result._task  # pylint: disable=protected-access
        started = self._started.pop((host, task._uuid), None)  # pylint: disable=protected-access
        if started is None:
            return
        self._rows.append({"host": host, "task": task.get_name(), "action": task.action, "status": status,
                           "changed": bool(result._result.get("changed")),  # pylint: disable=protected-access
                           "seconds": time.monotonic() - started})

    def v2_runner_on_ok(self, result):
        self._done(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._done(result, "failed")

    def v2_runner_on_skipped(self, result):
        self._done(result, "skipped")

    def v2_runner_on_unreachable(self, result):
        self._done(result, "unreachable")

    def v2_playbook_on_stats(self, stats):
        with open(os.environ["FLEET_TIMING_FILE"], "w") as handle:
            json.dump(self._rows, handle)
