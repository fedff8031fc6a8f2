"""MAC addresses for VIFs: ranges, validation, deterministic choice and fleet-wide assignment.

Xen's OUI ``00:16:3e`` leaves 24 free bits. Random or hashed suffixes collide across a
fleet (even odds by about 4,800 VIFs), so a hash only chooses where to *start* looking:
each VIF identity gets a probe sequence through the whole range (double hashing: a
start and an odd step, which over a power-of-two range visits every address exactly
once), and the first address nobody holds wins. Fleet-wide uniqueness then comes from
one planner that sees every assignment at once (``plan_fleet``), and stability from a
registry of assignments that the planner never rewrites.

Plain Python and stdlib only: bundled into modules and used by controller-side filters.
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any, Optional

from . import validate as v
from .errors import ConflictError, ValidationError

XEN_OUI = "00:16:3e"
# netback names the host end of every Xen VIF fe:ff:ff:ff:ff:ff; it is a convention, not a NIC's own address.
XEN_HOST_END_MAC = "fe:ff:ff:ff:ff:ff"
DEVICE_MAX = 65535
REGISTRY_VERSION = 1
# Link kinds whose address is borrowed from another interface (a bridge takes a port's MAC,
# a VLAN or bond its parent's), so it never counts as a second holder of that MAC.
BORROWING_KINDS = frozenset({"bridge", "bond", "team", "vlan", "macsec", "vrf", "ipvlan", "ipvtap",
                             "openvswitch", "hsr"})
# Masters whose slaves all carry the master's MAC.
AGGREGATING_KINDS = frozenset({"bond", "team"})

_HEX_OCTET = re.compile(r"^[0-9a-f]{2}$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_PERSON = b"openvif-vif-mac"  # part of the hash: changing it re-addresses every derived MAC
_SEPARATORS = re.compile(r"[:-]")


# ---------------------------------------------------------------- addresses and ranges

def mac_to_int(mac: str) -> int:
    """A normalised MAC (``00:16:3e:aa:00:11``) as a 48-bit integer."""
    return int(mac.replace(":", ""), 16)


def int_to_mac(value: int) -> str:
    h = f"{value:012x}"
    return f"{h[0:2]}:{h[2:4]}:{h[4:6]}:{h[6:8]}:{h[8:10]}:{h[10:12]}"


_CANONICAL = re.compile(r"^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$")


def normalize(field: str, value: Any) -> str:
    """Any common notation (``00-16-3E-AA-00-11``, ``00163eaa0011``) to lower-case colon form.

    Rejects multicast and all-zero addresses: neither may be a NIC's address.
    """
    # Fast path for the canonical form (what registries and hosts give us), same verdicts as v.mac.
    if isinstance(value, str) and _CANONICAL.match(value) and not int(value[:2], 16) & 1 \
            and value != "00:00:00:00:00:00":
        return value
    return v.mac(field, value, unicast=True)


def is_locally_administered(mac: str) -> bool:
    return bool(int(mac[:2], 16) & 0x02)


@dataclass(frozen=True)
class MacRange:
    """All addresses under a prefix of whole octets: ``00:16:3e`` leaves 24 bits, ``02:00`` 32."""

    prefix: str
    octets: int

    def __post_init__(self) -> None:
        # Precomputed: these sit on the hot path of assigning 100,000 VIFs.
        bits = 48 - 8 * self.octets
        object.__setattr__(self, "bits", bits)
        object.__setattr__(self, "size", 1 << bits)
        object.__setattr__(self, "base", int(self.prefix.replace(":", ""), 16) << bits)

    bits: int = dc_field(init=False, repr=False, compare=False)
    size: int = dc_field(init=False, repr=False, compare=False)
    base: int = dc_field(init=False, repr=False, compare=False)

    @property
    def pattern(self) -> str:
        return ":".join([self.prefix] + ["xx"] * (6 - self.octets))

    def contains(self, value: int) -> bool:
        return value >> self.bits == self.base >> self.bits

    def address(self, suffix: int) -> str:
        return int_to_mac(self.base | suffix)

    def check(self, field: str, mac: str) -> str:
        """``mac`` (normalised) if it lies in this range, else a ValidationError saying where it should be."""
        if not self.contains(mac_to_int(mac)):
            raise ValidationError(field, mac, f"is outside the requested range {self.pattern} "
                                              f"(prefix {self.prefix!r})")
        return mac


XEN_RANGE = MacRange(XEN_OUI, 3)


def parse_prefix(field: str, value: Any) -> MacRange:
    """A range prefix: Xen's OUI ``00:16:3e`` (optionally longer, to split it between sites),
    or 1-5 octets of a locally administered unicast prefix (second hex digit 2, 6, a or e)."""
    if value is None or value == "" or (isinstance(value, str) and value.strip().lower() == "xen"):
        return XEN_RANGE
    if not isinstance(value, str):
        raise ValidationError(field, value, "must be a MAC prefix such as '00:16:3e' or '02:00:00'")
    text = value.strip().lower()
    if _SEPARATORS.search(text):
        octets = _SEPARATORS.split(text)
    else:
        octets = [text[i:i + 2] for i in range(0, len(text), 2)] if len(text) % 2 == 0 else [text]
    if not 1 <= len(octets) <= 5 or not all(_HEX_OCTET.match(o) for o in octets):
        raise ValidationError(field, value, "is not a MAC prefix: give 1 to 5 hex octets such as "
                                            "'00:16:3e' (Xen) or '02:00:00' (locally administered)")
    prefix = ":".join(octets)
    first = int(octets[0], 16)
    if first & 0x01:
        raise ValidationError(field, prefix, "is a multicast prefix (lowest bit of the first octet is set); "
                                             "a NIC needs a unicast MAC")
    if not (prefix + ":").startswith(XEN_OUI + ":") and not first & 0x02:
        if len(octets) < 3 and XEN_OUI.startswith(prefix):
            raise ValidationError(field, prefix, f"is shorter than Xen's OUI; use {XEN_OUI!r} (or a longer "
                                                 "prefix under it) for the Xen range")
        raise ValidationError(field, prefix, f"is a globally administered prefix other than Xen's OUI "
                                             f"{XEN_OUI}; use {XEN_OUI!r} or a locally administered prefix "
                                             "(second hex digit 2, 6, a or e, such as '02:00:00')")
    return MacRange(prefix, len(octets))


# ---------------------------------------------------------------- VIF identities

def vif_key(field: str, vm: Any = None, device: Any = None, interface: Any = None, host: Any = None) -> str:
    """The stable name of a VIF: ``<vm>/<device>`` for a VM's NIC, else ``[<host>:]<interface>``.

    A VM name or UUID survives reboots and migrations; ``vif<domid>.<devid>`` does not (the
    domid changes when the domain restarts), so interface identities are a fallback.
    """
    # Fast path for the common, obviously valid case (100,000 of these per fleet plan). isinstance, not
    # type identity: Ansible 2.19 hands filters tagged str/int subclasses.
    if (isinstance(vm, str) and vm and vm[0] != " " and vm[-1] != " " and len(vm) != 36 and vm.isprintable()
            and (device is None or (isinstance(device, int) and not isinstance(device, bool)
                                    and 0 <= device <= DEVICE_MAX))):
        return f"{vm}/{device or 0}"
    if vm is not None:
        if not isinstance(vm, str) or not vm.strip():
            raise ValidationError(f"{field}vm", vm, "must be a non-empty VM name or UUID")
        if vm != vm.strip() or not vm.isprintable():
            raise ValidationError(f"{field}vm", vm, "must be printable, without leading or trailing spaces")
        name = vm.lower() if _UUID.match(vm) else vm
        number = v.integer(f"{field}device", 0 if device is None else device, 0, DEVICE_MAX)
        return f"{name}/{number}"
    if device is not None:
        raise ValidationError(f"{field}device", device, "needs 'vm': a device index identifies a NIC of a VM")
    if interface is None:
        raise ValidationError(f"{field}vm", None, "is required (or 'interface' to name the VIF by its "
                                                  "host interface, such as 'vif3.0')")
    ifname = v.ifname(f"{field}interface", interface)
    if host is None or host == "":
        return ifname
    if not isinstance(host, str) or "/" in host or not host.isprintable():
        raise ValidationError(f"{field}host", host, "must be a host name without '/'")
    return f"{host}:{ifname}"


# ---------------------------------------------------------------- deterministic choice

_HASH = hashlib.blake2b(digest_size=16, person=_PERSON)  # copied per key: cheaper than a new keyed object


def _start_and_step(key: str, bits: int) -> tuple[int, int]:
    """Where ``key`` starts probing (the digest's first 8 bytes) and its odd step (the last 8)."""
    h = _HASH.copy()
    h.update(key.encode("utf-8"))
    digest = int.from_bytes(h.digest(), "big")
    mask = (1 << bits) - 1
    return (digest >> 64) & mask, (digest & mask) | 1


def candidates(key: str, rng: MacRange = XEN_RANGE) -> Iterator[str]:
    """Every address of ``rng`` once, in the order ``key`` tries them."""
    start, step = _start_and_step(key, rng.bits)
    mask = rng.size - 1
    for i in range(rng.size):
        yield rng.address((start + i * step) & mask)


def choose(key: str, rng: MacRange = XEN_RANGE, in_use: Iterable[str] = ()) -> str:
    """The first address in ``key``'s probe order that is not in ``in_use`` (normalised MACs)."""
    taken = {mac_to_int(m) for m in in_use}
    return int_to_mac(first_free(key, rng, taken))


def first_free(key: str, rng: MacRange, taken: set[int]) -> int:
    start, step = _start_and_step(key, rng.bits)
    base, mask = rng.base, rng.size - 1
    candidate = base | start
    if candidate not in taken:  # the common case: no loop, no bookkeeping
        return candidate
    suffix = start
    for _step in range(rng.size - 1):
        suffix = (suffix + step) & mask
        candidate = base | suffix
        if candidate not in taken:
            return candidate
    raise ConflictError("prefix", rng.prefix, f"has no free address left for {key!r}: all {rng.size} "
                                              f"addresses of {rng.pattern} are in use")


def assign(rng: MacRange, existing: Mapping[str, int], new_keys: Iterable[str],
           taken: Optional[set[int]] = None) -> dict[str, int]:
    """The core: keep ``existing`` (key -> address as int), give every new key the first free
    address of its probe sequence. ``taken`` holds addresses used elsewhere (not modified).

    New keys are handled in sorted order, so the result does not depend on input order.
    O(n) expected: one hash and, at the load factors a 24-bit range sees, ~1 set lookup per key.
    """
    used = set(taken) if taken else set()
    used.update(existing.values())
    out = dict(existing)
    for key in sorted(k for k in set(new_keys) if k not in existing):
        address = first_free(key, rng, used)
        used.add(address)
        out[key] = address
    return out


# ---------------------------------------------------------------- what a host's links hold

def owned_address(link: Mapping[str, Any], masters: Mapping[int, str]) -> Optional[str]:
    """The MAC a link holds as its own, or None when it is borrowed, conventional or not a MAC.

    ``link`` has ``mac``, ``kind``, ``master`` (ifindex or None), ``loopback``; ``masters``
    maps ifindex -> kind, so a bond's slaves (which all wear the bond's MAC) are not counted.
    """
    mac = link.get("mac")
    if link.get("loopback") or not isinstance(mac, str):
        return None
    try:
        normal = normalize("mac", mac)
    except ValidationError:
        return None
    if normal == XEN_HOST_END_MAC or link.get("kind") in BORROWING_KINDS:
        return None
    if link.get("master") is not None and masters.get(link["master"]) in AGGREGATING_KINDS:
        return None
    return normal


# ---------------------------------------------------------------- Xen configuration

_XEN_VALUE = re.compile(r"^[^,='\"\s\\]+$")


def xen_vif_entry(mac: str, bridge: Optional[str] = None, **extra: Any) -> str:
    """One element of a Xen domain config's ``vif = [...]``: ``mac=00:16:3e:..,bridge=xenbr0``."""
    parts = [f"mac={normalize('mac', mac)}"]
    if bridge:
        parts.append(f"bridge={v.ifname('bridge', bridge)}")
    for name in sorted(extra):
        value = extra[name]
        if value is None or value == "":
            continue
        text = str(value).lower() if isinstance(value, bool) else str(value)
        if not re.match(r"^[a-z][a-z0-9_-]*$", name) or not _XEN_VALUE.match(text):
            raise ValidationError(name, value, "cannot be written into a Xen vif entry "
                                               "(no commas, '=', quotes, backslashes or spaces)")
        parts.append(f"{name}={text}")
    return ",".join(parts)


def xen_vif_config(entries: Sequence[str]) -> str:
    """The whole ``vif = ['...', '...']`` line of an xl/xm domain config."""
    return "vif = [" + ", ".join(f"'{e}'" for e in entries) + "]"


# ---------------------------------------------------------------- the registry file

def parse_registry(data: Any, rng: MacRange, field: str = "registry") -> dict[str, str]:
    """Validate a loaded registry (``{version, prefix, assignments}``, or None for none yet)."""
    assignments = _registry_source(data, rng, field)
    return {key: int_to_mac(address) for key, address in _registry_addresses(assignments, rng, field).items()}


def _registry_addresses(assignments: Mapping[Any, Any], rng: MacRange, field: str) -> dict[str, int]:
    out: dict[str, int] = {}
    holder: dict[int, str] = {}
    for key, mac in assignments.items():
        if not isinstance(key, str) or not key:
            raise ValidationError(f"{field}.assignments", key, "is not a VIF key ('<vm>/<device>' or "
                                                               "'<host>:<interface>')")
        if not isinstance(mac, str) or not _CANONICAL.match(mac):
            mac = normalize(f"{field}.assignments[{key!r}]", mac)
        address = int(mac.replace(":", ""), 16)
        if not rng.contains(address):  # every address of a range is unicast and non-zero
            rng.check(f"{field}.assignments[{key!r}]", normalize(f"{field}.assignments[{key!r}]", mac))
        if address in holder:
            first, second = sorted((holder[address], key))
            raise ConflictError(f"{field}.assignments[{second!r}]", int_to_mac(address),
                                f"is also assigned to {first!r}; a merge or a hand edit gave two VIFs one "
                                "MAC. Delete one of the two entries and run again to give it a new address")
        holder[address] = key
        out[key] = address
    return out


def _registry_source(data: Any, rng: MacRange, field: str = "registry") -> Mapping[Any, Any]:
    """The ``assignments`` mapping of a loaded registry, after checking its version and prefix."""
    if data is None or data == "" or data == {}:
        return {}
    if not isinstance(data, Mapping):
        raise ValidationError(field, type(data).__name__, "must be a mapping with 'version', 'prefix' "
                                                          "and 'assignments'")
    version = data.get("version", REGISTRY_VERSION)
    if version != REGISTRY_VERSION:
        raise ValidationError(f"{field}.version", version, f"is not supported; this collection reads "
                                                           f"version {REGISTRY_VERSION}")
    stored = data.get("prefix")
    if stored is not None and parse_prefix(f"{field}.prefix", stored) != rng:
        raise ConflictError(f"{field}.prefix", stored,
                            f"differs from the requested prefix {rng.prefix!r}; changing the range "
                            "re-addresses every VM, so start a new registry file for the new range")
    assignments = data.get("assignments") or {}
    if not isinstance(assignments, Mapping):
        raise ValidationError(f"{field}.assignments", type(assignments).__name__,
                              "must be a mapping of VIF key to MAC")
    return assignments


_NEEDS_ESCAPES = re.compile(r'["\\\x00-\x1f\x7f-\x9f\u2028\u2029]')


def _quoted(text: str) -> str:
    """A YAML double-quoted scalar. Printable characters stay as they are (the file is UTF-8), the
    rest become YAML escapes: json.dumps would write astral characters as surrogate pairs, which
    YAML does not join back together."""
    if text.isascii() and not _NEEDS_ESCAPES.search(text):
        return f'"{text}"'
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        else:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000
                       else f"\\U{code:08x}")
    return '"' + "".join(out) + '"'


def render_registry(assignments: Mapping[str, str], rng: MacRange) -> str:
    """The registry as YAML for people to review and commit: sorted, one VIF per line, stable."""
    lines = [
        "# openvif.vswitch vif_mac registry: fleet-wide VIF MAC assignments.",
        "# Written by the openvif.vswitch.vif_mac role; review and commit it with your inventory.",
        "# Entries are never changed by the role. Deleting one lets its VIF get a new MAC.",
        "# Keys: '<vm>/<device>' for a VM's NIC, '<host>:<interface>' for a VIF named by interface.",
        "---",
        f"version: {REGISTRY_VERSION}",
        f"prefix: \"{rng.prefix}\"",
    ]
    if not assignments:
        lines.append("assignments: {}")
    else:
        lines.append("assignments:")
        lines.extend(f"  {_quoted(key)}: \"{assignments[key]}\"" for key in sorted(assignments))
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- fleet-wide planning

VIF_OPTIONS = ("vm", "device", "interface", "bridge", "mac")
_VIF_OPTION_SET = frozenset(VIF_OPTIONS)  # the per-VIF check at fleet scale is one superset test


class _Declared:
    """One declared VIF (a slotted class: 100,000 of them are built per plan)."""

    __slots__ = ("key", "host", "index", "vm", "device", "interface", "bridge", "pin")

    def __init__(self, key: str, host: str, index: int, vm: Optional[str], device: Optional[int],
                 interface: Optional[str], bridge: Optional[str], pin: Optional[str]) -> None:
        self.key, self.host, self.index, self.vm, self.device = key, host, index, vm, device
        self.interface, self.bridge, self.pin = interface, bridge, pin


def _declared(declared: Mapping[str, Sequence[Any]], rng: MacRange) -> list[_Declared]:
    out: list[_Declared] = []
    where: dict[str, tuple[str, int]] = {}
    interfaces: dict[tuple[str, str], str] = {}
    names: dict[Any, str] = {}  # interface/bridge names repeat across hosts: validate each once

    def name(at: str, value: Any) -> str:
        if not isinstance(value, str) or value not in names:
            names[value] = v.ifname(at, value)
        return names[value]

    for host in sorted(declared):
        vifs = declared[host] or []
        if not isinstance(vifs, Sequence) or isinstance(vifs, str):
            raise ValidationError(f"vifs[{host}]", vifs, "must be a list of VIFs")
        for index, item in enumerate(vifs):
            if not isinstance(item, Mapping) or not _VIF_OPTION_SET.issuperset(item):
                _reject_item(f"vifs[{host}][{index}]", item)
            vm, device, interface = item.get("vm"), item.get("device"), item.get("interface")
            if interface is not None:
                interface = name(f"vifs[{host}][{index}].interface", interface)
            key = vif_key(f"vifs[{host}][{index}].", vm, device, interface, host)
            if key in where:
                raise ConflictError(f"vifs[{host}][{index}]", key,
                                    f"is declared twice (also at vifs[{where[key][0]}][{where[key][1]}]); "
                                    "a VM NIC runs on one host at a time")
            where[key] = (host, index)
            if interface is not None:
                if (host, interface) in interfaces:
                    raise ConflictError(f"vifs[{host}][{index}].interface", interface,
                                        f"on {host} is already the interface of {interfaces[(host, interface)]!r}")
                interfaces[(host, interface)] = key
            pin, bridge = item.get("mac"), item.get("bridge")
            if pin is not None:
                at = f"vifs[{host}][{index}].mac"
                pin = rng.check(at, normalize(at, pin))
            if bridge is not None:
                bridge = name(f"vifs[{host}][{index}].bridge", bridge)
            if vm is not None:
                vm, _slash, number = key.rpartition("/")
                device = int(number)
            out.append(_Declared(key, host, index, vm, device, interface, bridge, pin))
    return out


def _reject_item(at: str, item: Any) -> None:
    if not isinstance(item, Mapping):
        raise ValidationError(at, item, "must be a mapping with 'vm' (and 'device') or 'interface'")
    v.known_keys(at, item, VIF_OPTIONS, "a VIF")


class _Holders:
    """Who holds each address before a run: registry keys, and interfaces (named by their VIF's key
    when the interface is a declared VIF, so a VIF wearing its own MAC is one holder). ``first``
    has one holder per address; ``more`` only the rare shared ones."""

    __slots__ = ("first", "more", "seen_first", "seen_more", "current")

    def __init__(self, registered: Mapping[str, int]) -> None:
        self.first: dict[int, str] = {address: key for key, address in registered.items()}
        self.more: dict[int, set[str]] = {}
        self.seen_first: dict[int, str] = {}  # where each address was seen; later places only for shared ones
        self.seen_more: dict[int, list[str]] = {}
        self.current: dict[str, int] = {}  # VIF key -> address its interface has now

    def of(self, address: int) -> set[str]:
        if address in self.more:
            return self.more[address]
        return {self.first[address]} if address in self.first else set()


def _gather_holders(before: Mapping[str, int], seen: Mapping[str, Sequence[Any]],
                    by_interface: Mapping[tuple[str, str], str]) -> _Holders:
    """Phase 1: every address the registry and the hosts' interfaces hold."""
    holders = _Holders(before)
    first, more, seen_first, seen_more, current = (holders.first, holders.more, holders.seen_first,
                                                   holders.seen_more, holders.current)
    for host in sorted(seen):
        for n, link in enumerate(seen[host] or []):
            interface = link.get("interface") if isinstance(link, Mapping) else None
            if not isinstance(interface, str):
                raise ValidationError(f"seen[{host}][{n}]", link, "must be a mapping with 'interface' and 'mac'")
            mac = link.get("mac")
            if not isinstance(mac, str) or not _CANONICAL.match(mac) or int(mac[:2], 16) & 1:
                try:
                    mac = normalize("mac", mac)
                except ValidationError:
                    continue  # not a NIC address (zero, multicast, not 48-bit): holds nothing
            if mac == XEN_HOST_END_MAC or mac == "00:00:00:00:00:00":
                continue
            address = int(mac.replace(":", ""), 16)
            place = f"{host}:{interface}"
            holder = by_interface.get((host, interface), place)
            if seen_first.setdefault(address, place) is not place:
                seen_more.setdefault(address, []).append(place)
            if holder is not place:
                current[holder] = address
            other = first.setdefault(address, holder)
            if other != holder:
                more.setdefault(address, {other}).add(holder)
    return holders


def _apply_pins(vifs: Sequence[_Declared], holders: _Holders, after: dict[str, int]) -> list[str]:
    """Phase 2: pinned addresses, refused when anyone else holds them; the keys whose pin changed."""
    pinned: list[str] = []
    pin_owner: dict[int, str] = {}
    for d in vifs:
        if d.pin is None:
            continue
        address = mac_to_int(d.pin)
        others = sorted(holders.of(address) - {d.key})
        if address in pin_owner:
            raise ConflictError(f"vifs[{d.host}][{d.index}].mac", d.pin,
                                f"is also requested for {pin_owner[address]!r}")
        if others:
            raise ConflictError(f"vifs[{d.host}][{d.index}].mac", d.pin,
                                f"is already held by {', '.join(repr(o) for o in others)}")
        pin_owner[address] = d.key
        if after.get(d.key) != address:
            pinned.append(d.key)
            after[d.key] = address
    return pinned


def _adopt(rng: MacRange, holders: _Holders, after: dict[str, int]) -> list[str]:
    """Phase 4: new VIFs keep the in-range address their interface wears when nobody else holds it."""
    adopted: list[str] = []
    if not holders.current:
        return adopted
    assigned = set(after.values())
    for key in sorted(holders.current):
        address = holders.current[key]
        if (key not in after and rng.contains(address) and address not in holders.more
                and address not in assigned):
            after[key] = address
            assigned.add(address)
            adopted.append(key)
    return adopted


def _host_assignments(vifs: Sequence[_Declared], declared: Mapping[str, Any], macs: Mapping[str, str],
                      fresh: set[str], adopted: set[str], pinned: set[str]) -> dict[str, list[dict[str, Any]]]:
    """Phase 6: each host's VIFs with their MAC, where it came from, and their Xen vif entry."""
    assignments: dict[str, list[dict[str, Any]]] = {host: [] for host in declared}
    for d in vifs:
        mac = macs[d.key]
        source = ("new" if d.key in fresh else "adopted" if d.key in adopted
                  else "pinned" if d.key in pinned else "registry")
        assignments[d.host].append({
            "key": d.key, "vm": d.vm, "device": d.device, "interface": d.interface, "bridge": d.bridge,
            "mac": mac, "source": source, "xen_vif": f"mac={mac},bridge={d.bridge}" if d.bridge else f"mac={mac}",
        })
    return assignments


def _duplicates(holders: _Holders, before: Mapping[str, int], after: Mapping[str, int],
                declared_keys: set[str]) -> list[dict[str, Any]]:
    """Phase 7: addresses held by more than one NIC or entry, and whether this run resolves each."""
    out = []
    for address in sorted(holders.more):
        names = holders.more[address]
        # After this run a VIF key holds the address only if it is (still) assigned it;
        # an interface that is no declared VIF keeps holding it.
        remaining = {h for h in names if (h not in before and h not in declared_keys) or after.get(h) == address}
        seen_at = ([holders.seen_first[address]] if address in holders.seen_first else [])
        out.append({"mac": int_to_mac(address), "holders": sorted(names),
                    "seen_on": sorted(seen_at + holders.seen_more.get(address, [])),
                    "resolved": len(remaining) <= 1})
    return out


def plan_fleet(registry: Any, declared: Mapping[str, Sequence[Any]], seen: Mapping[str, Sequence[Any]],
               prefix: Any = None, *, prune: bool = False, adopt: bool = True) -> dict[str, Any]:
    """Assign a fleet-unique MAC to every declared VIF.

    ``registry``: the loaded registry file (or None); ``declared``: host -> [{vm, device,
    interface, bridge, mac}]; ``seen``: host -> [{interface, mac}] as gathered from the hosts.

    Existing registry entries are kept as they are. A VIF without one first keeps the
    address its interface already has when that lies in the range and nothing else holds
    it (``adopt``), else gets the first address of its probe order held by no registry
    entry and seen on no interface anywhere. ``prune`` drops entries of VIFs no longer
    declared; by default they stay, so a VM that comes back gets its MAC back and no new
    VM inherits an address that ARP caches and DHCP leases still remember.
    """
    rng = parse_prefix("prefix", prefix)
    before = _registry_addresses(_registry_source(registry, rng), rng, "registry")
    vifs = _declared(declared, rng)
    by_interface = {(d.host, d.interface): d.key for d in vifs if d.interface is not None}
    declared_keys = {d.key for d in vifs}

    holders = _gather_holders(before, seen, by_interface)
    after: dict[str, int] = dict(before)
    pinned = _apply_pins(vifs, holders, after)
    # Phase 3: prune.
    pruned = sorted(k for k in after if k not in declared_keys) if prune else []
    for key in pruned:
        del after[key]
    adopted = _adopt(rng, holders, after) if adopt else []
    # Phase 5: everyone else gets the first free address of its probe order.
    fresh = [d.key for d in vifs if d.key not in after]
    after = assign(rng, after, fresh, {a for a in holders.first if rng.contains(a)})

    # Entries kept as they were keep their text exactly as stored (it is already canonical).
    stored = registry.get("assignments") if isinstance(registry, Mapping) else None
    macs = {key: (stored[key] if before.get(key) == address and isinstance(stored[key], str)
                  and _CANONICAL.match(stored[key]) else int_to_mac(address))
            for key, address in after.items()}
    return {
        "prefix": rng.prefix,
        "range": rng.pattern,
        "assignments": _host_assignments(vifs, declared, macs, set(fresh), set(adopted), set(pinned)),
        "registry": dict(sorted(macs.items())),
        "registry_text": render_registry(macs, rng),
        "registry_changed": after != before,
        "added": sorted(fresh),
        "adopted": adopted,
        "pinned": pinned,
        "pruned": pruned,
        "kept": sum(1 for k, address in before.items() if after.get(k) == address),
        "undeclared": sorted(k for k in macs if k not in declared_keys),
        "duplicates": _duplicates(holders, before, after, declared_keys),
    }
