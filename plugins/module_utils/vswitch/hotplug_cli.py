"""``python3 -m vswitch.hotplug_cli``: the collection's hotplug scripts (installed by the vswitchd role).

``xen COMMAND [name=value ...]``: Xen's vif script contract (``script=vif-openvif`` in a domain's
vif line). ``COMMAND`` is ``online``/``offline`` for a paravirtual VIF (``type_if=vif``, env ``vif``
and ``XENBUS_PATH=backend/vif/<domid>/<devid>``) or ``add``/``remove`` for the emulated tap
(``type_if=tap``, env ``INTERFACE``). It reads ``bridge`` (``BR[.VLAN][:T1:T2...]``), ``mac`` and
the VM's name and UUID from xenstore, plugs the VIF with its profile and writes
``hotplug-status``: ``connected`` on success, or ``error`` and ``hotplug-error`` with the reason
and exit status 1, as Xen's own scripts' ``success`` and ``fatal`` do. Unplugging never fails a
domain's shutdown: it says what went wrong and exits 0, as Xen's scripts do.

``ifup IFNAME`` / ``ifdown IFNAME``: QEMU's ``-netdev tap,script=...,downscript=...`` and libvirt's
``<interface type='ethernet'><script path=.../>`` pass only the interface name; the VM's identity
comes from the environment: ``OPENVIF_VM`` (name or UUID), ``OPENVIF_DEVICE`` (default 0),
``OPENVIF_MAC`` (the MAC the guest's NIC has) and ``OPENVIF_BRIDGE`` (as Xen's ``bridge=``; optional
when a profile names the bridge).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import Optional

from .errors import ValidationError, VswitchError
from .profiles import VifIdentity, attached_mac

XEN_COMMANDS = ("add", "remove", "online", "offline")
_ASSIGNMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$")
_BACKEND = re.compile(r"backend/vif/(\d+)/(\d+)/?$")
_EMU = re.compile(r"^vif(\d+)\.(\d+)-emu$")


class HotplugError(Exception):
    """What stops a plug; the message goes to hotplug-error and the log."""


def complain(prog: str, message: str) -> None:
    sys.stderr.write(f"{prog}: {message}\n")
    try:
        import syslog

        syslog.openlog(prog, 0, syslog.LOG_DAEMON)
        syslog.syslog(syslog.LOG_ERR, message)
    except OSError:
        pass


# ------------------------------------------------------------------ xenstore, through its own tools
def xenstore_read(key: str) -> Optional[str]:
    done = subprocess.run(["xenstore-read", key], capture_output=True, text=True, timeout=30, check=False)
    return done.stdout.rstrip("\n") if done.returncode == 0 else None


def xenstore_write(pairs: Sequence[tuple[str, str]]) -> None:
    argv = ["xenstore-write"]
    for key, value in pairs:
        argv += [key, value]
    subprocess.run(argv, capture_output=True, timeout=30, check=False)


def xen_identity(ifname: str, backend: str) -> tuple[VifIdentity, Optional[str], dict[str, str]]:
    """Who the VIF is (from xenstore), the bridge= it names, and the external IDs Xen's callers record."""
    found = _BACKEND.search(backend)
    device = int(found.group(2)) if found else None
    frontend = xenstore_read(f"{backend}/frontend-id") or (found.group(1) if found else None)
    vm_path = xenstore_read(f"/local/domain/{frontend}/vm") if frontend else None
    name = xenstore_read(f"{vm_path}/name") if vm_path else None
    uuid = xenstore_read(f"{vm_path}/uuid") if vm_path else None
    mac = xenstore_read(f"{backend}/mac")
    ids = {key: val for key, val in (("xen-vm-name", name), ("xen-vm-uuid", uuid), ("attached-mac", mac)) if val}
    try:
        who = VifIdentity.from_external_ids(ifname, ids, device=device)
    except ValidationError as err:
        raise HotplugError(f"xenstore {backend}/mac: {err.value!r} {err.reason}") from None
    if who.attached_mac:
        ids["attached-mac"] = who.attached_mac
    return who, xenstore_read(f"{backend}/bridge"), ids


def _host():
    from .backends import open_host

    return open_host(record=False, light=True)


def xen(argv: Sequence[str], env: Mapping[str, str], prog: str = "vif-openvif") -> int:
    from .hotplug import load_profiles, plug, unplug

    command = argv[0] if argv else ""
    variables = dict(env)
    for extra in argv[1:]:   # Xen's scripts take name=value arguments as variables too
        found = _ASSIGNMENT.match(extra)
        if not found:
            complain(prog, f"argument {extra!r} is not name=value")
            return 1
        variables[found.group(1)] = found.group(2)
    if command not in XEN_COMMANDS:
        complain(prog, f"Invalid command: {command!r} (one of {', '.join(XEN_COMMANDS)})")
        return 1
    type_if = variables.get("type_if") or "vif"
    if type_if == "vif":
        dev, handled = variables.get("vif", ""), ("online", "offline")
    elif type_if == "tap":
        dev, handled = variables.get("INTERFACE", ""), ("add", "remove")
    else:
        complain(prog, f"unknown interface type {type_if!r} (vif or tap)")
        return 1
    if command not in handled:
        return 0   # the other kind of device's event: Xen calls the script for both
    backend = variables.get("XENBUS_PATH", "")
    emulated = _EMU.match(dev)
    if type_if == "tap" and emulated:
        backend = f"/local/domain/0/backend/vif/{emulated.group(1)}/{emulated.group(2)}"
    if not dev or not backend:
        complain(prog, f"{'vif' if type_if == 'vif' else 'INTERFACE'} and XENBUS_PATH must be set")
        return 1
    if command in ("offline", "remove"):
        try:
            unplug(_host(), dev)
        except (VswitchError, OSError) as err:
            complain(prog, f"{command} {dev}: {getattr(err, 'message', err)} (ignored, as Xen's scripts do)")
        return 0
    try:
        who, bridge_text, ids = xen_identity(dev, backend)
        plug(_host(), load_profiles(), who, bridge_text, ids)
    except (VswitchError, HotplugError, OSError) as err:
        message = f"{command} {dev}: {getattr(err, 'message', err)}; the VIF is not attached"
        xenstore_write([(f"{backend}/hotplug-error", message), (f"{backend}/hotplug-status", "error")])
        complain(prog, message)
        return 1
    if type_if == "vif":
        xenstore_write([(f"{backend}/hotplug-status", "connected")])
    return 0


def ifup(argv: Sequence[str], env: Mapping[str, str], prog: str = "openvif-ifup") -> int:
    from .hotplug import load_profiles, plug

    if len(argv) != 1:
        complain(prog, "usage: openvif-ifup IFNAME (QEMU's script=; identity in OPENVIF_VM, OPENVIF_DEVICE, "
                       "OPENVIF_MAC, OPENVIF_BRIDGE)")
        return 1
    try:
        who = ifup_identity(argv[0], env)
        ids = {"vm-id": who.vm_names[0]} if who.vm_names else {}
        if who.attached_mac:
            ids["attached-mac"] = who.attached_mac
        plug(_host(), load_profiles(), who, env.get("OPENVIF_BRIDGE") or None, ids)
    except VswitchError as err:
        complain(prog, f"{argv[0]}: {err.message}; the interface is not attached")
        return 1
    except OSError as err:
        complain(prog, f"{argv[0]}: {err}; the interface is not attached")
        return 1
    return 0


def ifup_identity(ifname: str, env: Mapping[str, str]) -> VifIdentity:
    from . import validate as v

    name = v.ifname("IFNAME", ifname)
    vm = env.get("OPENVIF_VM") or None
    device = v.integer("OPENVIF_DEVICE", env.get("OPENVIF_DEVICE") or 0, 0, 1023) if vm else None
    mac = attached_mac(env["OPENVIF_MAC"], "OPENVIF_MAC") if env.get("OPENVIF_MAC") else None
    ids = {"vm-id": vm} if vm else {}
    who = VifIdentity.from_external_ids(name, ids, device=device)
    return VifIdentity(ifname=who.ifname, vm_names=who.vm_names, device=who.device, attached_mac=mac)


def ifdown(argv: Sequence[str], env: Mapping[str, str], prog: str = "openvif-ifdown") -> int:
    from .hotplug import unplug

    if len(argv) != 1:
        complain(prog, "usage: openvif-ifdown IFNAME")
        return 1
    try:
        unplug(_host(), argv[0])
    except (VswitchError, OSError) as err:
        complain(prog, f"{argv[0]}: {getattr(err, 'message', err)}")
        return 1
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    verbs = {"xen": xen, "ifup": ifup, "ifdown": ifdown}
    if not args or args[0] not in verbs:
        sys.stderr.write("usage: python3 -m vswitch.hotplug_cli xen COMMAND | ifup IFNAME | ifdown IFNAME\n")
        return 1
    return verbs[args[0]](args[1:], os.environ)


if __name__ == "__main__":
    raise SystemExit(main())
