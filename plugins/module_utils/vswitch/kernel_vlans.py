"""How the kernel datapath expresses VLANs with Linux bridge VLAN filtering.

Pure translation between the model (a port's ``vlan`` / ``trunks`` / ``native_vlan``, VLAN
networks) and what the kernel stores (per-port VLAN entries with PVID/UNTAGGED flags), so it
can be tested without a kernel that has vlan_filtering.

- A bridge is switched to vlan_filtering only when something on it needs VLANs; until then it
  forwards tagged frames untouched, as it always did.
- On a filtering bridge a port with no VLAN settings is in the kernel's default VLAN 1,
  untagged: the bridge's untagged network. The uplink (PIF) additionally carries VLANs
  2-4094 tagged, so every VLAN of the bridge reaches the wire, as a plain uplink does in
  vswitchd. Only the uplink gets the whole range: the kernel keeps an entry per VLAN per port.
- A VLAN network ("VLAN 5 on xenbr0") is a bridge of its own, joined to its parent by a veth
  pair: the parent's end is an access port of the tag, the other end a plain port of the VLAN
  network's bridge. VIFs attach to the VLAN network like to any bridge and see its traffic
  untagged; the host can put an address on it. Both ends carry ``VLAN_LINK_ALIAS`` so the
  pair is recognised (and kept out of port lists) on every read.
"""
from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from typing import Dict, Optional, Tuple

BRIDGE_VLAN_INFO_PVID = 0x2
BRIDGE_VLAN_INFO_UNTAGGED = 0x4
ACCESS = BRIDGE_VLAN_INFO_PVID | BRIDGE_VLAN_INFO_UNTAGGED
TAGGED = 0
DEFAULT_VLAN = 1            # the kernel bridge's default_pvid
ALL_TAGGED = range(2, 4095)  # what an uplink carries tagged besides the untagged network
VLAN_LINK_ALIAS = "openvif:vlan-link:"   # + the VLAN network's name

# Aliases are evaluated at import: typing's generics, which Python 3.8 can subscript.
Entries = Dict[int, int]     # VID -> BRIDGE_VLAN_INFO_* flags
VlanSettings = Tuple[Optional[int], Optional[Tuple[int, ...]], Optional[int]]  # vlan, trunks, native_vlan


def entries_for(vlan: Optional[int], trunks: Optional[Iterable[int]], native_vlan: Optional[int],
                uplink: bool = False) -> Entries:
    """The VLAN entries a port needs for the model's settings."""
    if vlan is not None:
        return {vlan: ACCESS}
    if trunks:
        entries = {vid: TAGGED for vid in trunks}
        if native_vlan is not None:
            entries[native_vlan] = ACCESS
        return entries
    entries = {DEFAULT_VLAN: ACCESS}
    if uplink:
        entries.update((vid, TAGGED) for vid in ALL_TAGGED)
    return entries


def settings_of(entries: Mapping[int, int], uplink: bool = False) -> VlanSettings:
    """The model's (vlan, trunks, native_vlan) for a port's kernel VLAN entries (inverse of entries_for)."""
    if uplink and dict(entries) == entries_for(None, None, None, uplink=True):
        return None, None, None
    pvid = next((vid for vid, flags in entries.items() if flags & BRIDGE_VLAN_INFO_PVID), None)
    tagged = tuple(sorted(vid for vid, flags in entries.items()
                          if vid != pvid and not flags & BRIDGE_VLAN_INFO_UNTAGGED))
    if not tagged:
        return pvid, None, None
    return None, tagged, pvid


def merged_settings(current: VlanSettings, args: Mapping[str, object]) -> VlanSettings:
    """A port's VLAN settings once ``args`` (a set_port/add_port change) are applied to ``current``.

    The mode the change names wins: trunks make the port a trunk even though a port joining a
    bridge reads as an access port of VLAN 1, and an access VLAN ends a trunk.
    """
    vlan, trunks, native = current
    if "vlan" in args:
        vlan = args["vlan"]  # type: ignore[assignment]
    if "trunks" in args:
        trunks = tuple(args["trunks"]) if args["trunks"] else None  # type: ignore[arg-type]
    if "native_vlan" in args:
        native = args["native_vlan"]  # type: ignore[assignment]
    if args.get("vlan") is not None:
        trunks, native = None, None
    elif args.get("trunks"):
        vlan = None
    return vlan, trunks, native


def ranges(entries: Mapping[int, int]) -> list[tuple[int, int, int]]:
    """(first VID, last VID, flags) runs of consecutive VIDs with equal flags: few netlink requests."""
    runs: list[tuple[int, int, int]] = []
    for vid in sorted(entries):
        flags = entries[vid]
        # The kernel refuses a range that claims PVID (a port has one PVID), so those stay single.
        if runs and runs[-1][1] == vid - 1 and runs[-1][2] == flags and not flags & BRIDGE_VLAN_INFO_PVID:
            runs[-1] = (runs[-1][0], vid, flags)
        else:
            runs.append((vid, vid, flags))
    return runs


def changes_between(current: Mapping[int, int], wanted: Mapping[int, int]) -> tuple[Entries, Entries]:
    """(entries to delete, entries to add) to turn ``current`` into ``wanted``."""
    remove = {vid: flags for vid, flags in current.items() if wanted.get(vid) != flags}
    add = {vid: flags for vid, flags in wanted.items() if current.get(vid) != flags}
    return remove, add


def link_names(network: str) -> tuple[str, str]:
    """The veth pair joining VLAN network ``network`` to its parent: (parent's end, network's end).

    Readable when the name leaves room (xapi5 -> xapi5-vp / xapi5-vn); else a stable hash,
    since interface names stop at 15 characters. The alias, not the name, is what identifies them.
    """
    if len(network) <= 12:
        return f"{network}-vp", f"{network}-vn"
    digest = f"{zlib.crc32(network.encode()):08x}"
    return f"ovl{digest}vp", f"ovl{digest}vn"


def network_of_alias(alias: Optional[str]) -> Optional[str]:
    """The VLAN network a link belongs to, from its alias (None for every other link)."""
    if alias and alias.startswith(VLAN_LINK_ALIAS):
        return alias[len(VLAN_LINK_ALIAS):] or None
    return None
