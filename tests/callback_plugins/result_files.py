# Copyright (c) 2026, openvif developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test-only callback: write each host's last task result, diff included, to $RESULT_FILES_DIR/<host>.json."""
from __future__ import annotations

DOCUMENTATION = r"""
name: result_files
type: aggregate
short_description: Write each host's full task result (with diff) to a JSON file, for tests
description: Used by the project's integration tests to read module results exactly as Ansible returned them.
options: {}
"""

import json
import os

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "result_files"
    CALLBACK_NEEDS_ENABLED = True

    def _write(self, result, **extra):
        directory = os.environ["RESULT_FILES_DIR"]
        data = dict(result._result, **extra)  # pylint: disable=protected-access
        with open(os.path.join(directory, f"{result._host.get_name()}.json"), "w") as handle:
            json.dump(data, handle, default=str)

    def v2_runner_on_ok(self, result):
        self._write(result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._write(result, failed=True)

    def v2_runner_on_unreachable(self, result):
        self._write(result, unreachable=True, failed=True)
