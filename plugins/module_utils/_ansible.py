# Copyright (c) 2026, openvif developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The only place that touches AnsibleModule.

Modules call ``run_module(spec, action)``; ``action(params, context)`` is
plain Python from ``vswitch/actions.py`` returning a ``Result``. Every
``VswitchError`` becomes ``fail_json`` here, with its field/value/reason kept
as return values so playbooks can inspect them.
"""
from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.errors import VswitchError
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.result import Result


class Context:
    """What an action may know about the run: check mode, diff mode, and a warn() hook."""

    def __init__(self, module: AnsibleModule) -> None:
        self.check_mode = bool(module.check_mode)
        self.diff = bool(module._diff)  # pylint: disable=protected-access
        self._module = module

    def warn(self, message: str) -> None:
        self._module.warn(message)


def run_module(argument_spec: dict[str, Any], action: Callable[[dict[str, Any], Context], Result],
               **module_kwargs: Any) -> None:
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True, **module_kwargs)
    try:
        result = action(module.params, Context(module))
    except VswitchError as err:
        module.fail_json(msg=err.message, error=err.to_dict())
    except ModuleNotFoundError as err:
        if err.name and err.name.split(".")[0] == "pyroute2":
            module.fail_json(msg=missing_required_lib("pyroute2"), exception=traceback.format_exc())
        raise
    for warning in result.warnings:
        module.warn(warning)
    output: dict[str, Any] = dict(result.values)
    output["changed"] = result.changed
    if module._diff:  # pylint: disable=protected-access
        output["diff"] = {"before": result.before, "after": result.after}
    module.exit_json(**output)
