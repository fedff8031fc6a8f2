# Copyright (c) 2026, openvif developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The only place that touches AnsibleModule.

Modules call ``run_module(spec, action)``; ``action(params, context)`` is
plain Python from ``vswitch/actions.py`` returning a ``Result``. Every
``VswitchError`` becomes ``fail_json`` here, with its field/value/reason kept
as return values so playbooks can inspect them.
"""
from __future__ import annotations

import decimal
import math
import traceback
from collections.abc import Callable
from typing import Any, Optional

from ansible.module_utils.basic import AnsibleModule, _load_params, missing_required_lib
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.errors import ValidationError, VswitchError
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.result import Result


class Context:
    """What an action may know about the run: check mode, diff mode, and a warn() hook."""

    def __init__(self, module: AnsibleModule) -> None:
        self.check_mode = bool(module.check_mode)
        self.diff = bool(module._diff)  # pylint: disable=protected-access
        self._module = module

    def warn(self, message: str) -> None:
        self._module.warn(message)


def _not_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, str):
        try:
            return not decimal.Decimal(value.strip()).is_finite()
        except decimal.InvalidOperation:
            return False   # not a number at all: ansible-core's own check names the option
    return False


def _non_finite_number(argument_spec: dict[str, Any]) -> Optional[ValidationError]:
    """An int or float option given inf, -inf, Infinity or nan.

    ansible-core's int check crashes on them (int(Decimal('inf')) raises an OverflowError it does
    not catch, with no option named), and nan passes its float check; so they are caught here,
    before AnsibleModule checks types.
    """
    params = _load_params()
    if not isinstance(params, dict):   # validate-modules introspects the argument spec with no params
        return None
    for name, option in argument_spec.items():
        if option.get("type") in ("int", "float") and _not_finite(params.get(name)):
            return ValidationError(name, params[name], f"is not a finite number; {name} takes "
                                                       f"{'an integer' if option['type'] == 'int' else 'a number'}")
    return None


def run_module(argument_spec: dict[str, Any], action: Callable[[dict[str, Any], Context], Result],
               **module_kwargs: Any) -> None:
    bad = _non_finite_number(argument_spec)
    if bad is not None:
        # Let the bad option through as raw so that AnsibleModule can be built to report it.
        spec = {**argument_spec, bad.field: {**argument_spec[bad.field], "type": "raw"}}
        AnsibleModule(argument_spec=spec, supports_check_mode=True, **module_kwargs).fail_json(
            msg=bad.message, error=bad.to_dict())
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
