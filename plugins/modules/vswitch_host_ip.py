#!/usr/bin/python
# Copyright (c) 2026, openvif developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: the host's own IP moved onto a bridge as one guarded transaction."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: vswitch_host_ip
short_description: Move the host's own IP from its NIC to a bridge as one guarded, self-rolling-back transaction
description:
  - Puts the host's IPv4 and IPv6 addressing (addresses, routes, DNS servers and, by default, the NIC's MAC) on a bridge
    whose uplink is the NIC that holds it today, like Xen's C(network-bridge start), without cutting off the
    connection the play runs over.
  - "C(step=apply) snapshots the current addressing, then hands the change to a guard process detached from
    Ansible (it survives the module, the connection and C(kill -9) of the applier). The guard applies the
    change, verifies the new path (an ARP answer from the gateway, ICMP echo from O(verify_targets), a DHCP
    lease with O(bootproto=dhcp)) and waits O(rollback_timeout) seconds for C(step=confirm). Without that
    confirmation, or when verification fails, it restores exactly the previous addresses, routes, MAC, bridge
    state and resolv.conf by itself."
  - "C(step=confirm) is meant to run as the next task, over a fresh connection (C(meta: reset_connection)),
    so that a successful confirmation proves the controller still reaches the host."
  - The DHCP client is built in (DISCOVER/OFFER/REQUEST/ACK over AF_PACKET); it asks for the address the NIC
    had, and installs the lease with its lifetime. Renewal is the job of the host's network stack, which the
    openvif.vswitch.bridge role configures persistently.
  - Nothing is changed when the host already has the declared configuration.
version_added: "0.1.0"
author:
  - openvif developers (@openvif)
options:
  step:
    description: Which step of the transaction to run.
    type: str
    choices: [apply, confirm, report]
    default: apply
  token:
    description: The transaction token that C(step=apply) returned; required for C(confirm) and C(report).
    type: str
  bridge:
    description: The bridge that will carry the host's IP (created when missing).
    type: str
    required: true
  uplink:
    description:
      - The NIC that holds the IP today and becomes the bridge's uplink port.
      - Or a mapping that declares a bond as the uplink, exactly as the C(uplink) option of
        M(openvif.vswitch.vswitch_bridge) takes it (C(bond), C(members) and the bond settings C(mode), C(lacp),
        C(lacp_rate), C(lacp_fallback), C(primary), C(miimon), C(updelay), C(downdelay), C(rebalance_interval));
        the same validation applies.
        The addressing moves from the member that holds it (the first member when none does); a rollback
        puts every member back as it was.
    type: raw
    required: true
  bootproto:
    description: How the bridge gets its address.
    type: str
    choices: [dhcp, static]
    default: dhcp
  address:
    description: IPv4 address with prefix (V(192.0.2.10/24)), or without prefix together with O(netmask). Static only.
    type: str
  netmask:
    description: Netmask (V(255.255.255.0)) or prefix length for O(address) when it carries no prefix.
    type: str
  gateway:
    description: Default gateway (static only; must be inside the address's network). Verified by ARP.
    type: str
  address6:
    description:
      - Static IPv6 addresses of the bridge, each with its prefix (V(2001:db8::10/64)); one or a list.
      - When empty, the uplink's global and ULA addresses are carried as they are (SLAAC ones with their
        remaining lifetimes). Link-local addresses are never declared; the kernel derives them from the MAC.
    type: list
    elements: str
    default: []
  gateway6:
    description:
      - IPv6 default gateway; a global address inside one of O(address6)'s prefixes, or a link-local one with
        the bridge named (V(fe80::1%xenbr0)). Verified by neighbour discovery before the change is kept.
      - When unset, the uplink's IPv6 routes are carried (those learnt from router advertisements are learnt
        again on the bridge).
    type: str
  ipv6_autoconf:
    description:
      - Accept router advertisements and autoconfigure addresses (SLAAC) on the bridge. When true, a router must
        answer a solicitation on the bridge before the change is kept.
      - Unset, the bridge accepts advertisements exactly as the uplink did.
    type: bool
  dhcp6:
    description:
      - Get an IPv6 address on the bridge by DHCPv6 (IA_NA), with the same guard and rollback as the rest.
        No lease within O(dhcp_timeout) fails the move and rolls back both families.
      - Unset, as the uplink had it (a leased /128 address on it, or a DHCPv6 client running for it).
    type: bool
  dns:
    description: DNS servers written to O(resolv_conf) (with DHCP, the lease's servers are used when empty).
    type: list
    elements: str
    default: []
  dns_search:
    description: Search domains written to O(resolv_conf).
    type: list
    elements: str
    default: []
  mtu:
    description: MTU of the bridge and the uplink (default keeps the uplink's).
    type: int
  stp:
    description: Spanning tree on the bridge.
    type: bool
    default: false
  forward_delay:
    description: Bridge forward delay in seconds (default 0 without STP, 15 with).
    type: float
  datapath:
    description:
      - Which datapath holds the bridge. With C(userspace) the bridge lives in vswitchd and the host's IP
        goes on its internal port (a TAP named like the bridge); vswitchd must be running.
    type: str
    choices: [kernel, userspace]
    default: kernel
  move_mac:
    description: Give the bridge the uplink's MAC, so DHCP leases and neighbours' ARP caches stay valid.
    type: bool
    default: true
  verify_targets:
    description: Extra IPv4 or IPv6 addresses that must answer ICMP echo over the new path before it is kept.
    type: list
    elements: str
    default: []
  rollback_timeout:
    description: Seconds the guard waits for C(step=confirm) after verifying, before it rolls back.
    type: float
    default: 60
  verify_timeout:
    description: Seconds each verification (gateway ARP, each target's ping) may take.
    type: float
    default: 20
  rehome_dhcp_clients:
    description:
      - On commit, start the DHCP clients the uplink ran (dhclient, udhcpc, dhcpcd, stopped for the move) again
        for the bridge, for the families the bridge leases, so that they renew its leases.
      - V(false) leaves them stopped, for a host whose network manager (NetworkManager, systemd-networkd) takes
        the bridge over once its persisted profile is loaded and renews the leases itself; two clients would
        both renew. The P(openvif.vswitch.bridge#role) role sets it from the format it persists.
    type: bool
    default: true
  dhcp_timeout:
    description: Seconds to obtain a DHCP lease on the bridge.
    type: float
    default: 15
  resolv_conf:
    description: The resolver file to update and, on rollback, restore.
    type: path
    default: /etc/resolv.conf
  state_dir:
    description: Where the guard keeps its journal, commit file and log (one directory per bridge).
    type: path
    default: /run/openvif/hostnet
  vswitchd_socket:
    description: vswitchd's control socket, for O(datapath=userspace) (default V(/run/openvif/vswitchd.sock)).
    type: path
  test_hold:
    description:
      - For tests of the rollback only. Maps a step of the applier (V(unaddressed), V(bridged), V(addressed))
        to seconds to pause there, so a test can kill the applier mid-change.
    type: dict
requirements:
  - pyroute2 >= 0.7.2 on the managed host (Debian 12's python3-pyroute2 and later)
  - root (netlink, AF_PACKET, raw ICMP)
notes:
  - Supports check mode (reports whether a move is needed) and diff mode (before/after addressing).
  - IPv6 is carried with IPv4; a rollback restores both families. DHCPv6 leases are carried with their lifetimes
    but not renewed by the module.
"""

EXAMPLES = r"""
- name: Move the host's DHCP address from eth0 to xenbr0
  openvif.vswitch.vswitch_host_ip:
    bridge: xenbr0
    uplink: eth0
    bootproto: dhcp
  register: move

- name: Reconnect over the new path, so the confirmation proves it works
  ansible.builtin.meta: reset_connection

- name: Keep the new configuration
  openvif.vswitch.vswitch_host_ip:
    bridge: xenbr0
    uplink: eth0
    step: confirm
    token: "{{ move.token }}"
  when: move.pending

- name: The IP on eth0 moved onto xenbr0 in vswitchd, whose uplink is an active-backup bond of eth0 and eth1
  openvif.vswitch.vswitch_host_ip:
    bridge: xenbr0
    datapath: userspace
    uplink:
      bond: bond0
      members: [eth0, eth1]
      mode: active-backup
      primary: eth0
  register: move

- name: Static addressing, as in ifcfg-xenbr0
  openvif.vswitch.vswitch_host_ip:
    bridge: xenbr0
    uplink: eth0
    bootproto: static
    address: 172.16.0.102
    netmask: 255.255.0.0
    gateway: 172.16.0.1
    dns: [68.94.156.1, 68.94.157.1]
"""

RETURN = r"""
pending:
  description: True when a transaction was applied and waits for C(step=confirm).
  returned: step=apply
  type: bool
token:
  description: The transaction's token, to pass to C(step=confirm).
  returned: when pending
  type: str
phase:
  description: The transaction's phase (verified, committed, rolled_back, restore_failed).
  returned: when a transaction was run or looked up
  type: str
addressing:
  description: The normalised addressing (address, prefix, netmask, gateway, dns...), for persistent files.
  returned: always
  type: dict
bond:
  description:
    - With a bond as the uplink, the whole bond as the move makes it (its C(name) and every setting, the undeclared
      ones at their defaults), for persistent files; else null.
  returned: always
  type: dict
forward_delay:
  description:
    - The bridge's forward delay in seconds as the move makes it (the declared one, else 0 without STP and 15
      with), for persistent files.
  returned: always
  type: float
address_source:
  description: The NIC whose addressing moves (the uplink, or the bond member that holds the IP).
  returned: always
  type: str
result:
  description: What the guard applied and verified (lease, gateway, address, checks passed).
  returned: when pending
  type: dict
state:
  description: The links, addresses, routes and nameservers now on the host.
  returned: success
  type: dict
dhcp_clients_started:
  description:
    - The DHCP clients the uplink had (dhclient, udhcpc, dhcpcd), started again for the bridge with the same
      command line; empty when there were none (the bridge role then installs openvif-dhcp@BRIDGE.service).
  returned: step=confirm
  type: list
  elements: list
dhcp_clients_on_bridge:
  description: DHCP client processes (dhclient, udhcpc, dhcpcd) whose command line names the bridge.
  returned: step=apply, when nothing had to change
  type: list
  elements: list
dhcp_renewers:
  description:
    - Per family (C(ipv4), C(ipv6)), the program name of the host's own DHCP client that renews the bridge's lease
      (of RV(dhcp_clients_started), or of RV(dhcp_clients_on_bridge) when nothing had to change); null where none does.
  returned: step=confirm, or step=apply when nothing had to change
  type: dict
restored:
  description: What the rollback put back (step=report).
  returned: step=report
  type: dict
error:
  description: On failure, the field, value and reason (kind, field, value, reason, message).
  returned: failure
  type: dict
"""

from ansible_collections.openvif.vswitch.plugins.module_utils._ansible import run_module
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.hostnet.steps import run

ARGUMENT_SPEC = dict(
    step=dict(type="str", choices=["apply", "confirm", "report"], default="apply"),
    token=dict(type="str", no_log=False),
    bridge=dict(type="str", required=True),
    uplink=dict(type="raw", required=True),
    bootproto=dict(type="str", choices=["dhcp", "static"], default="dhcp"),
    address=dict(type="str"),
    netmask=dict(type="str"),
    gateway=dict(type="str"),
    address6=dict(type="list", elements="str", default=[]),
    gateway6=dict(type="str"),
    ipv6_autoconf=dict(type="bool"),
    dhcp6=dict(type="bool"),
    dns=dict(type="list", elements="str", default=[]),
    dns_search=dict(type="list", elements="str", default=[]),
    mtu=dict(type="int"),
    stp=dict(type="bool", default=False),
    forward_delay=dict(type="float"),
    datapath=dict(type="str", choices=["kernel", "userspace"], default="kernel"),
    move_mac=dict(type="bool", default=True),
    verify_targets=dict(type="list", elements="str", default=[]),
    rollback_timeout=dict(type="float", default=60),
    verify_timeout=dict(type="float", default=20),
    dhcp_timeout=dict(type="float", default=15),
    rehome_dhcp_clients=dict(type="bool", default=True),
    resolv_conf=dict(type="path", default="/etc/resolv.conf"),
    state_dir=dict(type="path", default="/run/openvif/hostnet"),
    vswitchd_socket=dict(type="path"),
    test_hold=dict(type="dict"),
)


def main() -> None:
    run_module(ARGUMENT_SPEC, run)


if __name__ == "__main__":
    main()
