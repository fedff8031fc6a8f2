#!/usr/bin/python
# Copyright (c) 2026, openvif developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: choose, check and set the MAC address of VM network interfaces (VIFs)."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: vif_mac
short_description: Deterministic, collision-free MAC addresses for VM interfaces (VIFs)
version_added: "0.1.0"
description:
  - Returns or enforces the MAC address of a VIF. Without O(mac), the address is derived from
    the VIF's identity, so the same VM NIC gets the same address on every run and every host
    as long as the O(in_use) list does not change.
  - Addresses lie in Xen's range C(00:16:3e:xx:xx:xx) by default, or under a locally administered
    unicast prefix (second hex digit 2, 6, A or E, such as C(02:00:00)) given in O(prefix).
  - The identity is the VM (name or UUID) plus the device index (O(vm), O(device)); or, as a
    fallback, the host interface name such as C(vif3.0) (O(interface), optionally qualified by
    O(host)). Prefer the VM, because a domid changes whenever the domain restarts.
  - A hash of the identity picks where to start in the range and an identity-specific step
    walks through every address of it; the first address not in O(in_use) wins. This is
    collision-free within one task and against O(in_use); fleet-wide uniqueness that also
    survives VMs being added and removed needs everyone's assignments at once, which is what
    the P(openvif.vswitch.vif_mac#role) role does with its registry file.
  - When O(interface) exists on the host and O(set_interface=true), its address is set
    (over netlink; links without live address change are taken down for the change only).
  - Also renders each VIF's entry for a Xen domain configuration, C(mac=...,bridge=...).
  - With O(gather=true) it lists the MACs the host's interfaces hold (bridges, VLANs, bond
    slaves and the C(fe:ff:ff:ff:ff:ff) of Xen host-side VIF ends borrow theirs and are left out).
  - Every check runs before anything changes. If setting one interface fails, those already
    set in the task are set back.
author:
  - openvif developers (@openvif)
requirements:
  - pyroute2 >= 0.5.14 on the managed host (Debian 11's python3-pyroute2 and later), for O(gather) and for
    setting addresses on interfaces.
options:
  vm:
    description: Name or UUID of the VM that owns the VIF (UUIDs are compared in lower case).
    type: str
  device:
    description:
      - The VIF's device index in the VM (C(vif<domid>.<device>), the guest's C(eth<device>)).
      - Defaults to 0 when O(vm) is given; meaningless without it.
    type: int
  interface:
    description:
      - The VIF's interface on this host, such as C(vif3.0) or C(tap0). Its address is set when it
        exists and O(set_interface=true).
      - Without O(vm), the interface name is the identity.
    type: str
  host:
    description: Qualifies an interface-name identity (every host has a C(vif1.0)); ignored with O(vm).
    type: str
  mac:
    description:
      - Use this address instead of deriving one. It must be unicast and inside O(prefix)'s range.
      - Any common notation is accepted (C(00-16-3E-AA-00-11), C(00163eaa0011)); results are lower-case
        colon form.
    type: str
  prefix:
    description:
      - The range to choose from and to check against. C(00:16:3e) (or C(xen)) is Xen's OUI; a longer
        prefix under it splits it (C(00:16:3e:80)). Otherwise 1 to 5 octets of a locally administered
        unicast prefix, such as C(02:00:00).
    type: str
    default: "00:16:3e"
  in_use:
    description:
      - MACs held by other NICs, to avoid. Strings, or mappings with a C(mac) key (as O(gather) returns).
      - If O(interface) already has one of them, that entry is taken to be the interface itself (lists
        gathered from a fleet contain it) and is not avoided for this VIF.
    type: list
    elements: raw
    default: []
  bridge:
    description: The bridge written into the Xen vif entry (C(bridge=xenbr0)); the default for O(vifs) entries.
    type: str
  vifs:
    description:
      - Many VIFs in one task; each is a mapping with the options C(vm), C(device), C(interface),
        C(host), C(mac) and C(bridge) as above. Addresses chosen for earlier entries are avoided
        by later ones. Mutually exclusive with O(vm), O(interface) and O(mac).
      - Entries of the role's plan (which also carry C(key), C(source) and C(xen_vif)) are accepted as they are.
    type: list
    elements: dict
  set_interface:
    description: Set the address on O(interface) when it exists. With V(false) the module only computes.
    type: bool
    default: true
  gather:
    description: Also return RV(in_use), the MACs this host's interfaces hold. Needs no VIF options.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: Computes everything and reports what it would set; changes nothing.
  diff_mode:
    support: full
    description: Before and after address of every interface that changes.
notes:
  - Use the P(openvif.vswitch.vif_mac#role) role to assign MACs across a whole fleet with a
    reviewable registry of assignments.
  - Filters for templates, such as P(openvif.vswitch.mac_normalize#filter) and
    P(openvif.vswitch.xen_vif#filter), live in this collection too.
seealso:
  - name: Xen networking (xl network configuration)
    description: The C(vif=) syntax of xl domain configurations.
    link: https://xenbits.xen.org/docs/unstable/man/xl-network-configuration.5.html
"""

EXAMPLES = r"""
- name: Derive web01's first NIC's MAC and set it on its host interface
  openvif.vswitch.vif_mac:
    vm: web01
    device: 0
    interface: vif3.0
    bridge: xenbr0
  register: web01_mac
  # web01_mac.mac -> '00:16:3e:2d:97:77', web01_mac.xen_vif -> 'mac=00:16:3e:2d:97:77,bridge=xenbr0'

- name: Only compute an address, avoiding MACs already in use, under a locally administered prefix
  openvif.vswitch.vif_mac:
    vm: 8c1e2a3f-0d4b-4e0e-9a55-3b0c6f1f9a10
    device: 1
    prefix: "02:00:00"
    in_use: ["02:00:00:12:34:56", "02:00:00:ab:cd:ef"]
    set_interface: false

- name: Enforce a given MAC (checked to be unicast and in the Xen range)
  openvif.vswitch.vif_mac:
    interface: vif7.0
    mac: "00:16:3E:AA:00:11"

- name: Many VIFs of this host in one task, then write the xl config line
  openvif.vswitch.vif_mac:
    bridge: xenbr0
    vifs:
      - {vm: db01, device: 0, interface: vif4.0}
      - {vm: db01, device: 1, interface: vif4.1, bridge: xapi1}
  register: db01
- ansible.builtin.copy:
    dest: /etc/xen/db01.vif.cfg
    content: "{{ db01.xen_vif_config }}\n"   # vif = ['mac=...,bridge=xenbr0', 'mac=...,bridge=xapi1']

- name: List the MACs this host's interfaces hold
  openvif.vswitch.vif_mac:
    gather: true
  register: macs_here
"""

RETURN = r"""
mac:
  description: The VIF's address (single-VIF form).
  returned: when a single VIF is given
  type: str
  sample: "00:16:3e:2d:97:77"
key:
  description: The VIF's identity as the registry names it, C(<vm>/<device>) or C([<host>:]<interface>).
  returned: when a single VIF is given
  type: str
  sample: web01/0
interface:
  description: The VIF's host interface, if one was given.
  returned: when a single VIF is given
  type: str
  sample: vif3.0
exists:
  description: Whether the interface exists on this host; null when the host was not looked at (O(set_interface=false)).
  returned: when a single VIF is given
  type: bool
xen_vif:
  description: The VIF's entry for a Xen domain configuration's C(vif = [...]).
  returned: when a single VIF is given
  type: str
  sample: "mac=00:16:3e:2d:97:77,bridge=xenbr0"
xen_vif_config:
  description: The whole C(vif = [...]) line for all VIFs of the task, in the order given.
  returned: always
  type: str
  sample: "vif = ['mac=00:16:3e:2d:97:77,bridge=xenbr0']"
prefix:
  description: The normalised prefix of the range used.
  returned: always
  type: str
  sample: "00:16:3e"
vifs:
  description: One entry per VIF, in the order given.
  returned: always
  type: list
  elements: dict
  contains:
    key: {description: The VIF's identity., type: str}
    mac: {description: Its address., type: str}
    interface: {description: Its host interface or null., type: str}
    bridge: {description: Its bridge for the Xen entry or null., type: str}
    exists: {description: Whether the interface exists here (null when not looked at)., type: bool}
    before: {description: The interface's address before the task (null if it does not exist)., type: str}
    changed: {description: Whether the interface's address was (or in check mode would be) set., type: bool}
    xen_vif: {description: The Xen vif entry., type: str}
in_use:
  description: The MACs this host's interfaces hold as their own, sorted by interface.
  returned: when O(gather=true)
  type: list
  elements: dict
  contains:
    interface: {description: Interface name., type: str}
    mac: {description: Its address., type: str}
    kind: {description: "Link kind, such as C(veth), C(tun), or C(device) for a plain NIC.", type: str}
  sample: [{interface: eth0, mac: "52:54:00:12:34:56", kind: device}]
diff:
  description: Addresses before and after, per interface that changes (in diff mode).
  returned: when diff mode is on
  type: dict
error:
  description: On failure, the field, value and reason (C(kind), C(field), C(value), C(reason), C(message)).
  returned: failure
  type: dict
  sample: {kind: invalid, field: mac, value: "01:16:3e:00:00:01",
           reason: "is a multicast address (lowest bit of the first octet is set); a NIC needs a unicast MAC"}
"""

from ansible_collections.openvif.vswitch.plugins.module_utils._ansible import run_module
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.mac_host import run

ARGUMENT_SPEC = dict(
    vm=dict(type="str"),
    device=dict(type="int"),
    interface=dict(type="str"),
    host=dict(type="str"),
    mac=dict(type="str"),
    prefix=dict(type="str", default="00:16:3e"),
    in_use=dict(type="list", elements="raw", default=[]),
    bridge=dict(type="str"),
    vifs=dict(type="list", elements="dict"),
    set_interface=dict(type="bool", default=True),
    gather=dict(type="bool", default=False),
)


def main() -> None:
    run_module(ARGUMENT_SPEC, run, mutually_exclusive=[("vifs", "vm"), ("vifs", "interface"), ("vifs", "mac")])


if __name__ == "__main__":
    main()
