# Copyright (c) 2026, openvif developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of vif_mac_registry: argument handling only; the logic is in vswitch/mac_registry.py."""
from __future__ import annotations

from typing import Any, Optional

from ansible.plugins.action import ActionBase
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch import mac as macs
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch import mac_registry as registries
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.errors import ValidationError, VswitchError


def _operate(args: dict[str, Any], check: bool, diff: bool) -> dict[str, Any]:
    rng = macs.parse_prefix("prefix", args["prefix"])
    if args["backend"] == "file" and not args["path"]:
        raise ValidationError("path", args["path"], "is required with backend 'file' (the registry file)")
    store = registries.backend(args["backend"], path=args["path"] or "", conninfo=args["dsn"],
                               table=args["table"], lock_timeout=args["lock_timeout"])
    operation = args["operation"]
    if operation == "plan":
        def planner(data: Any) -> dict[str, Any]:
            return macs.plan_fleet(data, args["declared"], args["seen"], rng.prefix,
                                   prune=args["prune"], adopt=args["adopt"])

        plan = store.update(planner, rng, write=not check)
        text = plan.pop("registry_text")
        result = dict(plan, changed=plan["registry_changed"])
        if diff and isinstance(store, registries.FileRegistry) and plan["registry_changed"]:
            result["diff"] = {"before": store.last_read or "", "after": text,
                              "before_header": store.path, "after_header": store.path}
    elif operation == "export":
        if not args["dest"]:
            raise ValidationError("dest", args["dest"], "is required with operation 'export'")
        assignments = store.assignments(rng)
        target = registries.FileRegistry(args["dest"], args["lock_timeout"])
        text = macs.render_registry(assignments, rng)
        there = target.assignments(rng)
        extra = sorted(k for k in there if assignments.get(k) != there[k])
        if extra:
            raise ValidationError("dest", args["dest"], f"holds assignments the source has not ({', '.join(extra[:5])}"
                                                        f"{', ...' if len(extra) > 5 else ''}); export to a new file")
        changed = target.read_text() != text
        if changed and not check:
            target.import_assignments(assignments, rng)  # locked and atomic like any registry write
        result = {"changed": changed, "registry": assignments}
    else:
        if not args["src"]:
            raise ValidationError("src", args["src"], "is required with operation 'import'")
        incoming = registries.FileRegistry(args["src"]).assignments(rng)
        added, changed = store.import_assignments(incoming, rng, write=not check)
        result = {"changed": changed, "imported": added, "registry": store.assignments(rng) if not check else incoming}
    if isinstance(store, registries.FileRegistry):
        result["lock_waited"] = round(store.waited, 3)
    return result


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp: Any = None, task_vars: Optional[dict[str, Any]] = None) -> dict[str, Any]:
        result = super().run(tmp, task_vars)
        validation, args = self.validate_argument_spec(argument_spec=registries.ARGUMENT_SPEC)
        try:
            result.update(_operate(args, bool(self._task.check_mode), bool(self._task.diff)))
        except VswitchError as err:
            result.update(failed=True, changed=False, msg=err.message, error=err.to_dict())
        return result
