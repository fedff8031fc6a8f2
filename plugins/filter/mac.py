# Copyright (c) 2026, openvif developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Jinja2 filters for VIF MAC addresses; the logic lives in module_utils/vswitch/mac.py."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

import yaml
from ansible.errors import AnsibleFilterError
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch import mac as macs
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch import validate
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.errors import VswitchError


def _fail(err: VswitchError, name: str) -> AnsibleFilterError:
    return AnsibleFilterError(f"{name}: {err.message}")


def mac_normalize(value: Any, prefix: Optional[str] = None) -> str:
    """``'00-16-3E-AA-00-11' | mac_normalize`` -> ``'00:16:3e:aa:00:11'``; fails on anything not a NIC's MAC."""
    try:
        mac = macs.normalize("mac", value)
        return macs.parse_prefix("prefix", prefix).check("mac", mac) if prefix is not None else mac
    except VswitchError as err:
        raise _fail(err, "mac_normalize") from None


def mac_is_valid(value: Any, prefix: Optional[str] = None) -> bool:
    """True when ``value`` is a unicast MAC (and, with ``prefix``, inside that range)."""
    try:
        rng = macs.parse_prefix("prefix", prefix) if prefix is not None else None
    except VswitchError as err:
        raise _fail(err, "mac_is_valid") from None  # a bad prefix is the template's bug, not a False
    try:
        mac = macs.normalize("mac", value)
        if rng is not None:
            rng.check("mac", mac)
    except VswitchError:
        return False
    return True


def vif_mac(vm: Any, device: int = 0, prefix: Optional[str] = None, in_use: Any = ()) -> str:
    """The deterministic MAC of ``vm``'s NIC ``device``, avoiding ``in_use`` (not fleet-unique by itself)."""
    try:
        rng = macs.parse_prefix("prefix", prefix)
        key = macs.vif_key("", vm, device)
        taken = [validate.mac(f"in_use[{i}]", m.get("mac") if isinstance(m, Mapping) else m, unicast=False)
                 for i, m in enumerate(in_use or ())]
        return macs.choose(key, rng, taken)
    except VswitchError as err:
        raise _fail(err, "vif_mac") from None


def xen_vif(value: Any, bridge: Optional[str] = None, **extra: Any) -> str:
    """``mac | xen_vif('xenbr0')`` -> ``'mac=...,bridge=xenbr0'``; also takes a mapping with mac/bridge/..."""
    try:
        if isinstance(value, Mapping):
            options = {k: val for k, val in value.items() if k not in ("key", "source", "xen_vif", "vm", "device",
                                                                       "interface", "host", "changed", "exists",
                                                                       "before")}
            mac = options.pop("mac", None)
            bridge = options.pop("bridge", None) or bridge
            options.update(extra)
            return macs.xen_vif_entry(mac, bridge, **options)
        return macs.xen_vif_entry(value, bridge, **extra)
    except VswitchError as err:
        raise _fail(err, "xen_vif") from None


def xen_vif_config(values: Any, bridge: Optional[str] = None) -> str:
    """A list of MACs, mappings or ready entries -> ``vif = ['mac=...,bridge=...', ...]``."""
    if not isinstance(values, (list, tuple)):
        raise AnsibleFilterError(f"xen_vif_config: expects a list, got {type(values).__name__}")
    entries = [v if isinstance(v, str) and v.startswith("mac=") else xen_vif(v, bridge) for v in values]
    return macs.xen_vif_config(entries)


def vif_mac_plan(registry: Any, declared: Any, seen: Any, prefix: Optional[str] = None,
                 prune: bool = False, adopt: bool = True) -> dict[str, Any]:
    """Fleet-wide plan (see ``mac.plan_fleet``): what the vif_mac role computes on the controller."""
    if not isinstance(declared, Mapping) or not isinstance(seen, Mapping):
        raise AnsibleFilterError("vif_mac_plan: 'declared' and 'seen' must map host names to lists")
    if isinstance(registry, str):
        # The registry file's text: parsed here with libyaml, which is many times faster on a
        # 100,000-line file than templating it through from_yaml.
        try:
            registry = yaml.load(str(registry), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        except yaml.YAMLError as err:
            raise AnsibleFilterError(f"vif_mac_plan: the registry is not valid YAML: {err}") from None
    try:
        return macs.plan_fleet(registry, declared, seen, prefix, prune=bool(prune), adopt=bool(adopt))
    except VswitchError as err:
        raise _fail(err, "vif_mac_plan") from None


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "mac_normalize": mac_normalize,
            "mac_is_valid": mac_is_valid,
            "vif_mac": vif_mac,
            "xen_vif": xen_vif,
            "xen_vif_config": xen_vif_config,
            "vif_mac_plan": vif_mac_plan,
        }
