#!/usr/bin/python
# Copyright (c) 2026, openvif developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: attach ports (VIFs, taps, veths, uplinks) to virtual switches."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: vswitch_port
short_description: Attach or detach ports of a virtual switch, one or many at once
version_added: "0.1.0"
description:
  - Makes interfaces ports of a bridge (C(brctl addif)) or removes them (C(brctl delif)).
  - A port belongs to one bridge only. A port already on another bridge is an error unless
    O(move=true), and then the diff shows it leaving the old bridge.
  - The batch form (O(ports)) handles many ports in one task and one transaction;
    with O(purge=true) ports of the named bridges that are not listed are detached
    (never the bridge's uplink, which M(openvif.vswitch.vswitch_bridge) owns).
  - On the kernel datapath a port must be an existing interface (a Xen VIF C(vif<domid>.<devid>), a
    tap, a veth, a NIC). On the userspace datapath vswitchd can create O(type=tap) and
    O(type=internal) ports itself.
  - All checks run before anything changes; a failed run leaves the host as it was.
options:
  name:
    description: One port's interface name. Use O(ports) for many.
    type: str
  bridge:
    description: The bridge the port(s) belong to; the default for entries of O(ports) without their own.
    type: str
  ports:
    description:
      - Many ports in one task. Each entry is an interface name or a mapping with C(name) and
        optionally C(bridge), C(type), C(vlan), C(trunks), C(native_vlan), C(mac), C(promiscuous), C(external_ids).
      - An entry with C(vm) (and optionally C(device)) instead of C(name) declares a VM port profile, as
        O(vm) does; ports and profiles of one task are one transaction. Not with O(purge).
    type: list
    elements: raw
  state:
    description: C(present) attaches, C(absent) detaches (the interface itself is not deleted).
    type: str
    choices: [present, absent]
    default: present
  purge:
    description: Detach ports of the bridge(s) named in this task that are not listed.
    type: bool
    default: false
  move:
    description: Allow taking a port that is already on another bridge.
    type: bool
    default: false
  type:
    description:
      - C(system) an existing interface; C(tap) and C(internal) a port vswitchd creates (userspace only).
    type: str
    choices: [system, tap, internal]
  vlan:
    description:
      - Access VLAN (1-4094), untagged on this port. Needs VLAN support in the datapath.
      - On the kernel datapath the bridge is switched to C(vlan_filtering) and this becomes the port's
        PVID; a kernel without VLAN filtering fails before anything changes.
    type: int
  trunks:
    description: Tagged VLANs of a trunk port, as a list or ranges like C(100-120,200).
    type: raw
  native_vlan:
    description: VLAN that a trunk port carries untagged.
    type: int
  mac:
    description: Port security, the only source MAC this port may send (userspace datapath).
    type: str
  promiscuous:
    description:
      - The port receives every frame on its VLANs (userspace datapath).
      - On the kernel datapath set the bridge's O(openvif.vswitch.vswitch_bridge#module:ageing_time) to 0 instead.
    type: bool
  external_ids:
    description:
      - What the port is to the rest of the system, as Open vSwitch's Interface C(external_ids) (userspace datapath).
      - The VM identity hotplug scripts record, such as C(attached-mac), C(iface-id), C(vm-id), C(xen-vm-name).
      - Declared whole; an empty map clears it.
    type: dict
  vm:
    description:
      - Declare a VM port profile instead of a port (the profile form, see docs/profiles.md), the port of
        VM O(vm) (its name or UUID), device O(device), whatever interface it has when the VM runs.
      - The profile is kept on the host (C(OPENVIF_STATE_DIR)), so it survives vswitchd restarts and
        reboots. Whenever a VIF of the VM appears (any domid, either datapath, plugged by the collection's
        C(vif-openvif) and C(openvif-ifup) scripts, or by Xen's C(vif-openvswitch) and libvirt through
        C(ovs-vsctl)) it gets exactly O(bridge), O(vlan), O(trunks), O(native_vlan), O(mac),
        O(promiscuous) and O(external_ids); a VIF realising it now gets them in this run.
      - O(mac=attached) makes the MAC the toolstack gives the VIF (the one the M(openvif.vswitch.vif_mac)
        role wrote into the VM's configuration) the port-security MAC, without typing it again.
      - Not with O(name), O(ports), O(type), O(purge) or O(move).
    type: str
  device:
    description: The VM's NIC index for the profile form (Xen's C(devid), the N of C(vif<domid>.N)); default 0.
    type: int
notes:
  - Supports check mode and diff mode. C(changed) is true exactly when the host changed.
requirements:
  - pyroute2 >= 0.5.14 for the kernel datapath (Debian 11's python3-pyroute2 and later)
seealso:
  - module: openvif.vswitch.vswitch_bridge
author:
  - openvif developers (@openvif)
"""

EXAMPLES = r"""
- name: Attach one VIF
  openvif.vswitch.vswitch_port:
    bridge: xenbr0
    name: vif3.0

- name: Exactly these VIFs on xapi1, in one transaction
  openvif.vswitch.vswitch_port:
    bridge: xapi1
    ports: [vif1.1, vif2.1, vif3.0]
    purge: true

- name: Ports on several bridges at once
  openvif.vswitch.vswitch_port:
    ports:
      - {name: vif1.0, bridge: xenbr0}
      - {name: vif4.0, bridge: xapi1}

- name: Move a VIF from xapi1 to xenbr0
  openvif.vswitch.vswitch_port:
    bridge: xenbr0
    name: vif4.0
    move: true

- name: A VIF on vswitchd with the VM identity Open vSwitch callers record
  openvif.vswitch.vswitch_port:
    bridge: xenbr1
    name: vif5.0
    external_ids: {attached-mac: "00:16:3e:00:05:00", xen-vm-name: web01}

- name: web01's first NIC, whatever it is called when web01 runs, on VLAN 10 and locked to its own MAC
  openvif.vswitch.vswitch_port:
    vm: web01
    device: 0
    bridge: xenbr1
    vlan: 10
    mac: attached

- name: A VIF there now and two VMs' ports, whenever they run, in one transaction
  openvif.vswitch.vswitch_port:
    bridge: xenbr1
    ports:
      - vif1.0
      - {vm: web01, vlan: 10, mac: attached}
      - {vm: db01, device: 1, trunks: "10,20"}

- name: Detach a VIF
  openvif.vswitch.vswitch_port:
    bridge: xenbr0
    name: vif3.0
    state: absent
"""

RETURN = r"""
ports:
  description: The ports the task named or changed, as they are after the run.
  returned: always
  type: dict
  sample:
    vif3.0: {name: vif3.0, bridge: xenbr0, type: system, uplink: false}
profile:
  description: The profile form's profile as declared after the run (null once absent).
  returned: when O(vm) is set
  type: dict
  sample: {vm: web01, device: 0, bridge: xenbr1, vlan: 10, mac: attached}
interfaces:
  description: The profile form's interfaces that realise the profile now.
  returned: when O(vm) is set
  type: list
  elements: str
profiles:
  description:
    - The batch form's profile entries as declared after the run, each with C(interfaces), the
      interfaces that realise it now (absent ones are left out).
  returned: when O(ports) has entries with C(vm)
  type: dict
  sample: {"web01/0": {vm: web01, device: 0, bridge: xenbr1, vlan: 10, mac: attached, interfaces: [vif3.0]}}
changes:
  description: The steps the run took (or would take), in order.
  returned: always
  type: list
  elements: str
"""

from ansible_collections.openvif.vswitch.plugins.module_utils._ansible import run_module
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch import actions
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.backends import open_host

ARGUMENT_SPEC = {
    "name": {"type": "str"},
    "bridge": {"type": "str"},
    "ports": {"type": "list", "elements": "raw"},
    "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
    "purge": {"type": "bool", "default": False},
    "move": {"type": "bool", "default": False},
    "type": {"type": "str", "choices": ["system", "tap", "internal"]},
    "vlan": {"type": "int"},
    "trunks": {"type": "raw"},
    "native_vlan": {"type": "int"},
    "mac": {"type": "str"},
    "promiscuous": {"type": "bool"},
    "external_ids": {"type": "dict"},
    "vm": {"type": "str"},
    "device": {"type": "int"},
}


def run(params, context):
    return actions.port(params, open_host(), context.check_mode)


def main():
    run_module(ARGUMENT_SPEC, run)


if __name__ == "__main__":
    main()
