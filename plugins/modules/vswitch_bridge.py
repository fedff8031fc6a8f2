#!/usr/bin/python
# Copyright (c) 2026, openvif developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: a virtual switch (bridge) on the kernel or userspace datapath."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: vswitch_bridge
short_description: Manage a virtual switch (Linux bridge or vswitchd bridge)
version_added: "0.1.0"
description:
  - Creates, changes or removes one virtual switch, the L2 segment a virtual network lives on
    (C(xenbr0) for an external network with an uplink, C(xapi1) for an internal one).
  - With O(datapath=kernel) (the default) the switch is a Linux bridge driven over rtnetlink with
    pyroute2, what C(brctl) users know. With O(datapath=userspace) it lives in the collection's
    own switching daemon vswitchd (deploy it with the M(openvif.vswitch.vswitchd) role).
  - Only the options you set are managed; others are left as they are.
  - When the bridge is created its MAC address is pinned, so it does not change when ports come and
    go. It is O(mac), or else a locally administered address derived from the machine id, the network
    namespace and the bridge name, so a rebuilt bridge gets the same MAC (neighbours' ARP caches stay
    right) and check mode shows it in advance.
  - All checks run before anything changes; if the datapath refuses a step, the steps already done
    are undone, so a failed run leaves the host as it was.
options:
  name:
    description:
      - Bridge name, at most 15 characters, no whitespace, C(/) or C(:).
      - Give O(name) for one bridge, or O(bridges) for many.
    type: str
  bridges:
    description:
      - Many bridges in one task, read, plan and transaction (instead of a loop of tasks).
      - Each entry is a mapping with C(name) and any of C(datapath), C(stp), C(forward_delay),
        C(ageing_time), C(mtu), C(mac), C(uplink), with the same meaning as the options of that name.
      - Errors name the entry, such as C(bridges[3].mtu).
    type: list
    elements: dict
  state:
    description: Whether the bridge exists. C(absent) deletes it (its ports are detached, not deleted).
    type: str
    choices: [present, absent]
    default: present
  datapath:
    description: Where the bridge lives.
    type: str
    choices: [kernel, userspace]
    default: kernel
  stp:
    description: Spanning tree protocol on or off (C(brctl stp)).
    type: bool
  forward_delay:
    description:
      - Forward delay in seconds (C(brctl setfd)), 0-30; at least 2 when O(stp=true).
    type: float
  ageing_time:
    description:
      - Seconds a learned MAC stays in the forwarding table (C(brctl setageing)).
      - C(0) learns nothing and floods every frame to every port, which makes each VIF see all traffic.
    type: int
  mtu:
    description: MTU of the bridge device, 68-65535.
    type: int
  mac:
    description: MAC address of the bridge (unicast). Pinned so it does not follow the ports.
    type: str
  uplink:
    description:
      - The physical interface (PIF) that joins this network to the outside, e.g. C(peth0).
      - It is attached as a port, set promiscuous and marked as the uplink. A bridge has at most one;
        naming a different one while another is attached is an error.
      - A mapping declares a bond as the uplink (the bond is then the network's one PIF), with the keys
        C(bond) (its name, required), C(members) (two or more NICs with one MTU, required), C(mode)
        (C(active-backup), the default; C(balance-slb); C(balance-tcp), which needs C(lacp)), C(lacp)
        (C(off), the default; C(active); C(passive)), C(lacp_rate) (C(slow) or C(fast)), C(lacp_fallback)
        (bool, default true, meaning active-backup when the partner speaks no LACP), C(primary) (a member),
        C(miimon), C(updelay), C(downdelay) and C(rebalance_interval) (milliseconds).
        See docs/bonds.md.
      - The kernel datapath needs the Linux bonding driver (kernel module C(bonding)) and has no
        C(balance-slb); on a kernel without it the run fails naming the module, and
        O(datapath=userspace) bonds in vswitchd instead.
    type: raw
notes:
  - Supports check mode and diff mode. C(changed) is true exactly when the host changed.
  - Requires pyroute2 on the managed host for the kernel datapath.
requirements:
  - pyroute2 >= 0.5.14 for the kernel datapath (Debian 11's python3-pyroute2 and later)
seealso:
  - module: openvif.vswitch.vswitch_port
  - module: openvif.vswitch.vswitch_info
author:
  - openvif developers (@openvif)
"""

EXAMPLES = r"""
- name: External network on the first NIC
  openvif.vswitch.vswitch_bridge:
    name: xenbr0
    uplink: peth0
    stp: false
    forward_delay: 0
    mtu: 1500

- name: Internal network, no uplink, every VIF sees every frame
  openvif.vswitch.vswitch_bridge:
    name: xapi1
    ageing_time: 0

- name: A bridge in vswitchd
  openvif.vswitch.vswitch_bridge:
    name: xenbr1
    datapath: userspace

- name: A bonded uplink with LACP, in vswitchd
  openvif.vswitch.vswitch_bridge:
    name: xenbr0
    datapath: userspace
    uplink:
      bond: bond0
      members: [eth1, eth2]
      mode: balance-tcp
      lacp: active
      lacp_rate: fast

- name: Remove a network
  openvif.vswitch.vswitch_bridge:
    name: xapi9
    state: absent

- name: Every network of a host in one transaction
  openvif.vswitch.vswitch_bridge:
    bridges:
      - {name: xenbr0, uplink: peth0, stp: false, forward_delay: 0}
      - {name: xapi1, ageing_time: 0}
      - {name: xenbr1, datapath: userspace}
"""

RETURN = r"""
bridge:
  description: The bridge as it is after the run (or would be, in check mode).
  returned: when O(name) is given
  type: dict
  sample:
    name: xenbr0
    state: present
    datapath: kernel
    stp: false
    forward_delay: 0.0
    ageing_time: 300
    mtu: 1500
    mac: "fe:ff:ff:ff:ff:ff"
    uplink: peth0
    ports: [peth0, vif1.0]
bridges:
  description: With O(bridges), each listed bridge after the run, by name (same fields as RV(bridge)).
  returned: when O(bridges) is given
  type: dict
changes:
  description: The steps the run took (or would take), in order.
  returned: always
  type: list
  elements: str
  sample: ["add_bridge xenbr0 (stp=False)", "add_port peth0 (bridge=xenbr0, type=system, uplink=True)"]
"""

from ansible_collections.openvif.vswitch.plugins.module_utils._ansible import run_module
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch import actions
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.backends import open_host

ARGUMENT_SPEC = {
    "name": {"type": "str"},
    "bridges": {"type": "list", "elements": "dict"},
    "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
    "datapath": {"type": "str", "choices": ["kernel", "userspace"], "default": "kernel"},
    "stp": {"type": "bool"},
    "forward_delay": {"type": "float"},
    "ageing_time": {"type": "int"},
    "mtu": {"type": "int"},
    "mac": {"type": "str"},
    "uplink": {"type": "raw"},
}


def run(params, context):
    return actions.bridge(params, open_host(), context.check_mode)


def main():
    run_module(ARGUMENT_SPEC, run)


if __name__ == "__main__":
    main()
