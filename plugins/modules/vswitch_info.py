#!/usr/bin/python
# Copyright (c) 2026, openvif developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: what brctl show and bridge fdb show tell, as facts."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: vswitch_info
short_description: Facts about virtual switches, their ports and learned MACs
version_added: "0.1.0"
description:
  - Reports every bridge of every datapath on the host (Linux bridges, and vswitchd's when it runs)
    with its settings, ports, uplink and forwarding table, what C(brctl show),
    C(brctl showmacs) and C(bridge fdb show) tell.
  - Also reports drift, per host, between what the modules declared on the kernel datapath (the
    declaration that C(openvif-boot.service) restores at boot) and what the kernel has now, such as a bridge
    deleted by hand, a port detached with C(brctl), a setting changed by hand.
  - Has no side effects; sets the C(vswitch) fact.
options:
  bridges:
    description: Only these bridges (default all).
    type: list
    elements: str
  fdb:
    description: Include the forwarding table (learned, static and local MACs with their age).
    type: bool
    default: true
notes:
  - Supports check mode (it never changes anything).
requirements:
  - pyroute2 >= 0.5.14 for the kernel datapath (Debian 11's python3-pyroute2 and later)
author:
  - openvif developers (@openvif)
"""

EXAMPLES = r"""
- name: Gather switch facts
  openvif.vswitch.vswitch_info:

- name: Show the ports of xenbr0
  ansible.builtin.debug:
    var: vswitch.bridges.xenbr0.ports
"""

RETURN = r"""
vswitch:
  description: Bridges, ports and forwarding entries; also set as the C(vswitch) fact.
  returned: always
  type: dict
  contains:
    bridges:
      description: Bridge name to its settings (datapath, stp, forward_delay, ageing_time, mtu, mac, uplink, ports).
      type: dict
    ports:
      description: Port name to its bridge and settings.
      type: dict
    bonds:
      description:
        - Bond name to its bridge, C(mode), C(lacp), C(settings) (the whole declared record), the
          C(active_member), C(lacp_status) (C(negotiated), C(off), C(fallback active-backup), C(no partner)),
          C(failovers), and C(members), each with C(name), C(link) (up/down), C(enabled) (carries traffic),
          C(active), C(lacp) (the receive machine, current/expired/defaulted), C(lacp_actor) and
          C(lacp_partner) (system, key, port and state bits) and its counters.
      type: dict
    fdb:
      description: Forwarding entries (bridge, port, mac, vlan, age in seconds, static, local).
      type: list
      elements: dict
    datapaths:
      description: The datapaths that answered on this host.
      type: list
      elements: str
    declaration:
      description:
        - The declaration kept on the host (C(OPENVIF_STATE_DIR), default C(/var/lib/openvif)) and the
          host's drift from it.
        - C(path) is the file read, C(error) what is wrong with the declaration (or null).
        - C(drift) lists each difference as C(kind) (bridge, vlan, port), C(name), C(field) (C(state)
          when the object is missing, C(bridge) when a port is on another bridge or none), C(declared)
          and C(actual). Declared ports whose interface does not exist (VIFs of stopped VMs) are not drift.
      type: dict
      sample:
        path: /var/lib/openvif/declared.json
        error: null
        drift:
          - {kind: bridge, name: xapi1, field: ageing_time, declared: 0, actual: 300}
          - {kind: port, name: vif1.0, field: bridge, declared: xenbr0, actual: null}
    profiles:
      description:
        - The VM port profiles declared on this host (M(openvif.vswitch.vswitch_port) with C(vm)), by
          C(<vm>/<device>), each with its declared settings and C(interfaces), the VIFs that realise it
          now (empty while the VM is stopped).
      type: dict
      sample:
        web01/0: {vm: web01, device: 0, bridge: xenbr1, vlan: 10, mac: attached, interfaces: [vif7.0]}
"""

from ansible_collections.openvif.vswitch.plugins.module_utils._ansible import run_module
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch import actions
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.backends import open_host

ARGUMENT_SPEC = {
    "bridges": {"type": "list", "elements": "str"},
    "fdb": {"type": "bool", "default": True},
}


def run(params, context):
    return actions.info(params, open_host())


def main():
    run_module(ARGUMENT_SPEC, run)


if __name__ == "__main__":
    main()
