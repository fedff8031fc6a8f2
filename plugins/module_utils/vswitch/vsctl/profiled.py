"""Profiles for the ports an ``ovs-vsctl`` line plugs: Xen's vif-openvswitch and libvirt get them too.

Those callers name the VM in the external IDs they set (``xen-vm-name``, ``xen-vm-uuid``, ``vm-id``,
``attached-mac``). Once a line's commands are planned, every port it added or changed is matched
against the declared profiles; a match adds the profile's settings to the same transaction, and a
contradiction (another bridge, another VLAN, a MAC that is not the profile's) fails the whole line,
so the VIF is not attached rather than attached wrongly.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Optional

from ..errors import VswitchError
from ..plan import plan_ports
from ..profiles import ATTACHED_MAC_ID, PROFILE_ID, Profile, VifIdentity, match, resolve
from .commands import Context
from .syntax import VsctlError

PORT_OPS = ("add_port", "set_port")


def apply_profiles(ctx: Context, load: Callable[[], list[Profile]]) -> None:
    """Add the profile settings of the ports this line touches (``load`` reads the profiles, once)."""
    touched = sorted({c.target for c in ctx.changes if c.op in PORT_OPS and c.target in ctx.state.ports})
    profiles: Optional[list[Profile]] = None
    for name in touched:
        port = ctx.state.ports[name]
        ids = dict(port.external_ids or {})
        try:
            who = VifIdentity.from_external_ids(name, ids)
        except VswitchError as err:
            raise VsctlError(f"{name}: external_ids:{ATTACHED_MAC_ID}: {err.value!r} {err.reason}") from None
        if not who.vm_names:
            continue
        if profiles is None:
            try:
                profiles = load()
            except VswitchError as err:
                raise VsctlError(f"the VM port profiles cannot be read: {err.message}") from None
        try:
            profile = match(profiles, who)
            if profile is None:
                continue
            spec = resolve(profile, who, port.bridge, port.vlan, port.trunks)
        except VswitchError as err:
            raise VsctlError(f"{name}: {err.message}") from None
        spec = replace(spec, external_ids={**(spec.external_ids or {}), **ids, PROFILE_ID: profile.key})
        ctx.plan(lambda spec=spec: plan_ports([spec], ctx.state, ctx.features))
