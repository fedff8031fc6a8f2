#!/usr/bin/python
# Copyright (c) 2026, openvif developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: a VLAN network ("VLAN 5 on xenbr0") that VIFs attach to like any bridge."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: vswitch_vlan
short_description: Manage VLAN networks (a VLAN of a parent bridge, as a network of its own)
version_added: "0.1.0"
description:
  - Declares a VLAN network the way XenServer and Open vSwitch present it, as its own bridge (what
    C(ovs-vsctl br-to-vlan xapi3) answers with C(5)) with a parent bridge and an 802.1Q tag.
  - VIFs attach to it with M(openvif.vswitch.vswitch_port) like to any bridge and see its traffic
    untagged; the parent's uplink carries it tagged.
  - The parent's datapath decides where it lives. On the userspace datapath (vswitchd) it always works.
    On the kernel datapath it needs bridge VLAN filtering; the parent is switched to C(vlan_filtering)
    and the VLAN network becomes a Linux bridge of its own, joined to the parent by a veth pair
    (C(<name>-vp)/C(<name>-vn)) whose parent end is an access port of the tag. On a kernel without
    VLAN filtering the module fails before changing anything, naming the missing feature.
  - All checks run before anything changes; a failed run leaves the host as it was.
options:
  name:
    description: Name of the VLAN network (at most 15 characters), e.g. C(xapi3).
    type: str
    required: true
  parent:
    description: The bridge that carries the VLAN, e.g. C(xenbr0). Required when O(state=present).
    type: str
  tag:
    description: The 802.1Q VLAN ID, 1-4094, unique on the parent. Required when O(state=present).
    type: int
  state:
    description:
      - C(absent) removes the VLAN network (its ports are detached). A parent cannot be removed while it
        still carries VLAN networks.
    type: str
    choices: [present, absent]
    default: present
notes:
  - Supports check mode and diff mode. C(changed) is true exactly when the host changed.
requirements:
  - pyroute2 >= 0.5.14 for the kernel datapath (Debian 11's python3-pyroute2 and later)
seealso:
  - module: openvif.vswitch.vswitch_bridge
  - module: openvif.vswitch.vswitch_port
author:
  - openvif developers (@openvif)
"""

EXAMPLES = r"""
- name: VLAN 5 on xenbr0 as the network xapi3
  openvif.vswitch.vswitch_vlan:
    name: xapi3
    parent: xenbr0
    tag: 5

- name: A VM's VIF on VLAN 5
  openvif.vswitch.vswitch_port:
    bridge: xapi3
    name: vif7.0

- name: Remove the VLAN network
  openvif.vswitch.vswitch_vlan:
    name: xapi3
    state: absent
"""

RETURN = r"""
vlan:
  description: The VLAN network after the run (or as it would be, in check mode).
  returned: always
  type: dict
  sample: {name: xapi3, state: present, parent: xenbr0, tag: 5, datapath: userspace, ports: [vif7.0]}
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
    "name": {"type": "str", "required": True},
    "parent": {"type": "str"},
    "tag": {"type": "int"},
    "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
}


def run(params, context):
    return actions.vlan(params, open_host(), context.check_mode)


def main():
    run_module(ARGUMENT_SPEC, run, required_if=[("state", "present", ("parent", "tag"))])


if __name__ == "__main__":
    main()
