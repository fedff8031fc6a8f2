"""The kernel datapath: Linux bridges driven over rtnetlink with pyroute2.

Reads every link in one dump and applies a plan as a transaction: each
netlink step records how to undo itself, and if any step fails the journal is
replayed backwards, so the host ends as it began. Nothing here runs ip, brctl
or bridge.
"""
from __future__ import annotations

import gzip
import os
import typing
from collections.abc import Callable, Sequence
from typing import Any, Optional

from . import kernel_vlans as kv
from .errors import BackendError, VswitchError
from .identity import stable_mac
from .kernel_bonds import (
    IFLA_BOND_AD_LACP_ACTIVE,
    bond_attrs,
    bond_status,
    kernel_bond_features,
    lacp_active_attr,
    lacp_passive_missing,
    record_of,
)
from .model import UPLINK_ALIAS, BridgeState, Change, FdbEntry, Features, HostState, Link, PortState
from .rtnl import (
    IFF_PROMISC,
    IFF_UP,
    IFLA_BR_VLAN_FILTERING,
    RawLink,
    changelink,
    dellink,
    dump_links,
    dump_port_vlans,
    get_link,
    newlink_bridge,
    request,
    send_batch,
    setlink,
    setlink_master,
)
from .settings import BRIDGE, BRIDGE_SETTINGS, USER_HZ

NUD_PERMANENT = 0x80   # the bridge's own addresses ("local")
NUD_NOARP = 0x40       # entries added as static
# The settings the kernel keeps as IFLA_BR_* attributes (the others are link attributes: MTU, MAC).
BRIDGE_ATTRS = {name: setting for name, setting in BRIDGE.items() if setting.bridge_attr is not None}

Undo = typing.Callable[[], None]   # evaluated at import: typing's, which 3.8 can subscript
ATTACH_CHUNK = 256     # attach requests per pipelined send (their ACKs fit the socket's buffer)
VLAN_ARGS = ("vlan", "trunks", "native_vlan")


def _plain_attach(change: Change) -> bool:
    """An attach that is only a master change: no uplink marker, no VLANs to program."""
    return change.op == "add_port" and not change.args.get("uplink") and \
        not any(change.args.get(key) for key in VLAN_ARGS)


def _attach_runs(changes: Sequence[Change]) -> list[list[Change]]:
    """Consecutive plain attaches grouped together; every other change alone, in order."""
    runs: list[list[Change]] = []
    for change in changes:
        if _plain_attach(change) and runs and _plain_attach(runs[-1][0]):
            runs[-1].append(change)
        else:
            runs.append([change])
    return runs


def kernel_config_has(option: str) -> Optional[bool]:
    """Whether the running kernel was built with ``option`` (None if its config is not readable)."""
    paths = ["/proc/config.gz", f"/boot/config-{os.uname().release}"]
    for path in paths:
        try:
            opener = gzip.open if path.endswith(".gz") else open
            with opener(path, "rt") as config:  # type: ignore[operator]
                text = config.read()
        except OSError:
            continue
        return f"\n{option}=y" in text or f"\n{option}=m" in text
    return None


def _attr(msg: Any, name: str, default: Any = None) -> Any:
    value = msg.get_attr(name)
    return default if value is None else value


class KernelBackend:
    datapath = "kernel"

    def __init__(self, netns: Optional[str] = None, light: bool = False) -> None:
        """``light``: also send a single plain attach or detach with rtnl.py, and open pyroute2 only
        when a change needs it, for the hotplug scripts, which start a Python for every VIF (importing
        pyroute2 takes longer than a whole plug), and the boot restore, whose bridges, attaches and
        uplink markers rtnl.py encodes (pyroute2 only for VLANs and bonds). Otherwise pyroute2 is
        opened before the first change touches the host (see ``_ipr``)."""
        self._netns = netns
        self._light = light
        self._ipr_socket: Any = None   # pyroute2's IPRoute, opened by the first change (see _ipr)
        self._features: Optional[Features] = None
        self._index: dict[str, int] = {}
        self._raw: dict[str, RawLink] = {}  # the last read, so applying needs no extra look-ups
        # MACs this apply pinned on bridges it made (not in the last read): attaching their ports
        # needs no look-up of the bridge (boot makes every bridge, then attaches a thousand ports).
        self._pinned: dict[str, str] = {}
        self._vlans: dict[str, kv.Entries] = {}   # VLAN entries of ports of filtering bridges (last read)
        self._filtering: set[str] = set()          # bridges with vlan_filtering on
        # Each change op and the step that applies it (a plan names only these).
        self._steps: dict[str, Callable[[Change, list[Undo]], None]] = {
            "add_bridge": self._add_bridge, "set_bridge": self._set_bridge, "del_bridge": self._del_bridge,
            "add_port": self._add_port, "set_port": self._set_port, "del_port": self._del_port,
        }

    @property
    def _ipr(self) -> Any:
        """pyroute2, checked and opened on first use: reads go through rtnl.py, so a run that changes
        nothing (the second run of a playbook, check mode, vswitch_info) never imports it, which is
        most of a module's own time. The first change opens it before it touches the host, so a missing
        or too old pyroute2 still fails with nothing changed."""
        return self._open_pyroute2()

    def _open_pyroute2(self) -> Any:
        if self._ipr_socket is None:
            from .pyroute2_req import iproute  # ImportError: modules report missing_required_lib

            self._ipr_socket = iproute(self._netns)
        return self._ipr_socket

    def close(self) -> None:
        if self._ipr_socket is not None:
            self._ipr_socket.close()

    # ----------------------------------------------------------------- features
    @property
    def features(self) -> Features:
        if self._features is None:
            # Without bridge VLAN filtering in the kernel, VLANs are refused before anything
            # changes (the planner names the missing feature and points to vswitchd).
            modes, missing = kernel_bond_features(kernel_config_has)
            self._features = Features(vlan_filtering=self._probe_vlan_filtering(), bond_modes=modes,
                                      bond_missing=missing,
                                      lacp_passive_missing=lacp_passive_missing() if modes else missing)
        return self._features

    def _probe_vlan_filtering(self) -> bool:
        configured = kernel_config_has("CONFIG_BRIDGE_VLAN_FILTERING")
        if configured is not None:
            return configured
        # No readable kernel config: ask the kernel with a throwaway bridge that exists for one call.
        from pyroute2.netlink.exceptions import NetlinkError

        probe = f"ovfprobe{os.getpid() % 100000}"
        try:
            self._ipr.link("add", ifname=probe, kind="bridge", br_vlan_filtering=1)
        except NetlinkError:
            return False
        self._delete(self._ipr.link_lookup(ifname=probe)[0])
        return True

    # --------------------------------------------------------------------- read
    def read(self) -> HostState:
        raw = {link.name: link for link in dump_links(self._netns)}
        names = {link.index: link.name for link in raw.values()}
        self._index = {name: link.index for name, link in raw.items()}
        self._raw, self._pinned = raw, {}
        links = {
            name: Link(name=name, kind=link.kind, master=names.get(link.master) if link.master else None,
                       mtu=link.mtu, mac=link.mac, up=bool(link.flags & IFF_UP),
                       promisc=bool(link.flags & IFF_PROMISC), alias=link.alias)
            for name, link in raw.items()
        }
        members: dict[str, list[str]] = {name: [] for name, link in raw.items() if link.kind == "bridge"}
        self._filtering = {name for name in members if (raw[name].bridge or {}).get(IFLA_BR_VLAN_FILTERING)}
        # Only filtering bridges have VLANs to read: other hosts pay for no second dump.
        by_index = dump_port_vlans(self._netns) if self._filtering else {}
        self._vlans = {name: by_index.get(link.index, {}) for name, link in raw.items()
                       if names.get(link.master) in self._filtering}
        networks: dict[str, tuple[str, Optional[int]]] = {}   # VLAN network -> (parent, tag)
        ports: dict[str, PortState] = {}
        for link in links.values():
            if link.master not in members:
                continue
            network = kv.network_of_alias(link.alias)
            if network is not None:  # one end of a VLAN network's link: not a port anyone declared
                if link.master != network:
                    networks[network] = (link.master, kv.settings_of(self._vlans.get(link.name, {}))[0])
                continue
            members[link.master].append(link.name)
            uplink = link.alias == UPLINK_ALIAS
            vlan, trunks, native = (kv.settings_of(self._vlans.get(link.name, {}), uplink)
                                    if link.master in self._filtering else (None, None, None))
            bond = self._read_bond(link.name, raw) if link.kind == "bond" else None
            ports[link.name] = PortState(name=link.name, bridge=link.master, type="system", vlan=vlan,
                                         trunks=trunks, native_vlan=native, uplink=uplink, bond=bond)
        bridges = {}
        for name, member_names in members.items():
            data = raw[name].bridge or {}
            uplinks = [p for p in member_names if ports[p].uplink]
            parent, tag = networks.get(name, (None, None))
            bridges[name] = BridgeState(
                name=name, datapath="kernel",
                **{key: setting.decode(data.get(setting.bridge_attr.rtnl, 0))  # type: ignore[union-attr]
                   for key, setting in BRIDGE_ATTRS.items()},
                mtu=links[name].mtu, mac=links[name].mac, uplink=uplinks[0] if uplinks else None,
                ports=tuple(sorted(member_names)), parent=parent, tag=tag,
            )
        return HostState(bridges=bridges, ports=ports, links=links, datapaths=("kernel",))

    def fdb(self, bridge: Optional[str] = None) -> list[FdbEntry]:
        if not self._index:
            self.read()
        names = {index: name for name, index in self._index.items()}
        entries = []
        for msg in self._ipr.fdb("dump"):
            master = msg.get_attr("NDA_MASTER")
            if not master:  # the port's own unicast/multicast list, not a bridge FDB entry
                continue
            bridge_name = names.get(master, str(master))
            if bridge is not None and bridge_name != bridge:
                continue
            state = msg["state"]
            cache = msg.get_attr("NDA_CACHEINFO") or {}
            local, static = bool(state & NUD_PERMANENT), bool(state & NUD_NOARP)
            entries.append(FdbEntry(
                bridge=bridge_name, port=names.get(msg["ifindex"], str(msg["ifindex"])),
                mac=msg.get_attr("NDA_LLADDR"), vlan=msg.get_attr("NDA_VLAN"),
                age=None if (local or static) else cache.get("ndm_updated", 0) / USER_HZ,
                static=static, local=local,
            ))
        return sorted(entries, key=lambda e: (e.bridge, e.port, e.mac))

    # -------------------------------------------------------------------- apply
    def apply(self, changes: Sequence[Change]) -> None:
        if not changes:
            return
        if not self._index:
            self.read()
        if not self._light:
            self._open_pyroute2()   # a missing pyroute2 fails here, before the host changes
        journal: list[Undo] = []
        for group in _attach_runs(changes):
            change = group[0]
            try:
                if len(group) > 1 or (self._light and _plain_attach(change)):
                    # many plain attaches in a row: pipelined, one round trip per chunk
                    self._attach_many(group, journal)
                else:
                    self._steps[change.op](change, journal)
            except Exception as err:
                failed_undos = self._rollback(journal)
                if failed_undos:
                    raise BackendError(change.target, dict(change.args),
                                       f"could not be applied ({change.op}): {err}; and undoing the steps before "
                                       f"it failed too ({failed_undos[0]}): the host may be partly changed"
                                       ) from err
                if isinstance(err, VswitchError):
                    raise
                # netlink refused: report it with the step that failed
                raise BackendError(change.target, dict(change.args),
                                   f"could not be applied ({change.op}): {err}; nothing was changed") from err

    def _rollback(self, journal: list[Undo]) -> list[str]:
        """Undo the journal backwards; returns what could not be undone (empty: the host is as it was)."""
        failed = []
        for undo in reversed(journal):
            try:
                undo()
            except Exception as err:  # keep undoing the rest, and say what stayed
                failed.append(str(err))
        # Indexes and VLANs may have changed; re-read before the next use.
        self._index, self._raw, self._vlans, self._filtering, self._pinned = {}, {}, {}, set(), {}
        return failed

    def _idx(self, name: str) -> int:
        if name not in self._index:
            found = self._ipr.link_lookup(ifname=name)
            if not found:
                raise BackendError("name", name, "does not exist on this host")
            self._index[name] = found[0]
        return self._index[name]

    def _delete(self, index: int) -> None:
        request(dellink(index), self._netns)   # not pyroute2's: see rtnl.dellink

    def _link(self, name: str) -> Any:
        return self._ipr.get_links(self._idx(name))[0]

    def _set(self, name: str, **attrs: Any) -> None:
        self._ipr.link("set", index=self._idx(name), **attrs)

    @staticmethod
    def _bridge_attrs(args: dict[str, Any]) -> dict[str, Any]:
        return {setting.bridge_attr.pyroute2: setting.bridge_attr.encode(args[key])  # type: ignore[union-attr]
                for key, setting in BRIDGE_ATTRS.items() if key in args}

    def _add_bridge(self, change: Change, journal: list[Undo]) -> None:
        name, args = change.target, dict(change.args)
        if args.get("parent") is not None:
            self._add_vlan_network(name, args["parent"], int(args["tag"]), journal)
            return
        settings = {setting.bridge_attr.rtnl: setting.bridge_attr.encode(args[key])  # type: ignore[union-attr]
                    for key, setting in BRIDGE_ATTRS.items() if key in args}
        # One round trip: the bridge with its settings, then (the kernel takes an MTU as the user's only
        # when it is set on an existing bridge, so it stays when ports join) MTU, MAC and up. Pinning the
        # MAC (the planner always gives one) keeps it from following the lowest port MAC.
        codes = send_batch([newlink_bridge(name, settings),
                            setlink(name=name, mtu=args.get("mtu") or None, mac=args.get("mac"),
                                    flags=IFF_UP, change=IFF_UP)], self._netns)
        if codes[0] == 0:
            journal.append(lambda: self._delete(self._idx(name)))
        refused = next((code for code in codes if code), 0)
        if refused:
            raise OSError(refused, os.strerror(refused))
        made = get_link(name, self._netns)
        if made is None:
            raise BackendError("bridge", name, "was created but is gone again")
        self._index[name] = made.index
        if not args.get("mac"):
            request(setlink(made.index, mac=made.mac), self._netns)
        self._pinned[name] = args.get("mac") or made.mac

    def _set_bridge(self, change: Change, journal: list[Undo]) -> None:
        name, args = change.target, dict(change.args)
        old = self._link(name)
        data = old.get_attr("IFLA_LINKINFO").get_attr("IFLA_INFO_DATA")
        attrs = self._bridge_attrs(args)
        if attrs:
            previous = {key: _attr(data, "IFLA_" + key.upper(), 0) for key in attrs}
            self._set(name, kind="bridge", **attrs)
            journal.append(lambda: self._set(name, kind="bridge", **previous))
        if "mtu" in args:
            old_mtu = _attr(old, "IFLA_MTU")
            self._set(name, mtu=args["mtu"])
            journal.append(lambda: self._set(name, mtu=old_mtu))
        if "mac" in args:
            old_mac = _attr(old, "IFLA_ADDRESS")
            self._pinned.pop(name, None)
            self._set(name, address=args["mac"])
            journal.append(lambda: self._set(name, address=old_mac))

    def _del_bridge(self, change: Change, journal: list[Undo]) -> None:
        name = change.target
        snapshot = self.read()
        bridge = snapshot.bridges[name]
        if bridge.parent is not None:
            # Deleting one end of the veth pair deletes both; the parent's end is the one in the parent.
            self._delete(self._idx(kv.link_names(name)[0]))
        self._delete(self._idx(name))
        self._index.pop(name, None)
        self._pinned.pop(name, None)
        was_filtering = name in self._filtering
        self._filtering.discard(name)
        bonds = {port: snapshot.ports[port].bond for port in bridge.ports if snapshot.ports[port].bond}
        for bond_name, record in bonds.items():   # a bond is its network's uplink: it goes with it
            self._remove_bond(bond_name, record["members"], [])

        def recreate() -> None:
            settings: dict[str, Any] = {key: getattr(bridge, key) for key in BRIDGE_SETTINGS}
            if bridge.parent is not None:
                settings = {"parent": bridge.parent, "tag": bridge.tag}
            self._add_bridge(Change("add_bridge", name, "kernel", settings), [])
            if was_filtering:
                self._ensure_filtering(name, [])
            for port in bridge.ports:
                state = snapshot.ports[port]
                vlans = {key: getattr(state, key) for key in VLAN_ARGS if getattr(state, key) is not None}
                self._add_port(Change("add_port", port, "kernel",
                                      {"bridge": name, "uplink": state.uplink, "bond": state.bond, **vlans}), [])
        journal.append(recreate)

    def _add_vlan_network(self, name: str, parent: str, tag: int, journal: list[Undo]) -> None:
        """A bridge of its own, joined to ``parent`` by a veth pair whose parent end is an access port of ``tag``."""
        self._ensure_filtering(parent, journal)
        parent_end, own_end = kv.link_names(name)
        mtu = self._raw[parent].mtu if parent in self._raw else _attr(self._link(parent), "IFLA_MTU")
        self._ipr.link("add", ifname=name, kind="bridge")
        journal.append(lambda: self._delete(self._idx(name)))
        self._set(name, address=stable_mac(name), mtu=mtu)
        self._ipr.link("add", ifname=parent_end, kind="veth", peer={"ifname": own_end})
        journal.append(lambda: self._delete(self._idx(parent_end)))
        for end, master in ((own_end, name), (parent_end, parent)):
            self._set(end, ifalias=kv.VLAN_LINK_ALIAS + name, mtu=mtu)
            self._set(end, master=self._idx(master), state="up")
        self._vlans[parent_end] = {kv.DEFAULT_VLAN: kv.ACCESS}  # what the kernel gives a new port
        self._program_vlans(parent_end, {tag: kv.ACCESS}, journal)
        self._set(name, state="up")

    # --------------------------------------------------------------------- VLANs
    def _ensure_filtering(self, bridge: str, journal: list[Undo]) -> None:
        """Turn VLAN filtering on for ``bridge`` (once; its ports stay in the untagged VLAN 1)."""
        if bridge in self._filtering:
            return
        self._set(bridge, kind="bridge", br_vlan_filtering=1)
        journal.append(lambda: self._set(bridge, kind="bridge", br_vlan_filtering=0))
        self._filtering.add(bridge)
        bridge_index = self._idx(bridge)
        for link in dump_links(self._netns):  # fresh: the uplink may have joined in this transaction
            if link.master == bridge_index and link.alias == UPLINK_ALIAS:
                # From now on VLANs on this bridge exist; its uplink carries all of them to the wire.
                self._program_vlans(link.name, kv.entries_for(None, None, None, uplink=True), journal)

    def _current_vlans(self, name: str) -> kv.Entries:
        return self._vlans.get(name) or {kv.DEFAULT_VLAN: kv.ACCESS}

    def _program_vlans(self, name: str, wanted: kv.Entries, journal: list[Undo]) -> None:
        """Make port ``name``'s VLAN entries exactly ``wanted`` (deletions first: a port has one PVID)."""
        current = self._current_vlans(name)
        remove, add = kv.changes_between(current, wanted)
        if not remove and not add:
            return
        # Registered before the requests: if one fails half-way, the undo puts back what there was.
        journal.append(lambda: self._restore_vlans(name, current))
        index = self._idx(name)
        for first, last, _flags in kv.ranges(remove):
            self._ipr.vlan_filter("del", index=index, vlan_info={"vid": _vid(first, last)})
        for first, last, flags in kv.ranges(add):
            self._ipr.vlan_filter("add", index=index, vlan_info={"vid": _vid(first, last), "flags": flags})
        self._vlans[name] = dict(wanted)

    def _restore_vlans(self, name: str, entries: kv.Entries) -> None:
        """Undo: read what the port has now (a step may have stopped half-way) and program ``entries``."""
        self._vlans[name] = dump_port_vlans(self._netns).get(self._idx(name), {})
        self._program_vlans(name, entries, [])

    def _configure_vlans(self, change: Change, journal: list[Undo]) -> None:
        """Program the VLANs a port change asks for (access, trunk, native) on a filtering bridge."""
        if not any(key in change.args for key in VLAN_ARGS):
            return
        name, bridge = change.target, change.args["bridge"]
        self._ensure_filtering(bridge, journal)
        current = self._current_vlans(name)
        uplink = self._is_uplink(name)
        vlan, trunks, native = kv.merged_settings(kv.settings_of(current, uplink), change.args)
        self._program_vlans(name, kv.entries_for(vlan, trunks, native, uplink), journal)

    def _is_uplink(self, name: str) -> bool:
        known = self._raw.get(name)
        alias = known.alias if known else self._link(name).get_attr("IFLA_IFALIAS")
        return alias == UPLINK_ALIAS

    def _before_attach(self, name: str, bridge: str, bridge_macs: Optional[dict[str, str]] = None
                       ) -> tuple[bool, str]:
        """What attaching ``name`` to ``bridge`` changes besides the master: its up state, the bridge MAC.

        ``bridge_macs``: bridge MACs already read for this chunk of pipelined attaches (all of them
        are read before the chunk is sent, so each would read the same MAC): one read per bridge,
        not per port, for bridges made in this same apply (boot makes them all).
        """
        known = self._raw.get(name)
        was_up = bool((known.flags if known else self._link(name)["flags"]) & IFF_UP)
        if bridge_macs is not None and bridge in bridge_macs:
            return was_up, bridge_macs[bridge]
        known_bridge = self._raw.get(bridge)
        bridge_mac = known_bridge.mac if known_bridge else self._pinned.get(bridge) or _attr(
            self._link(bridge), "IFLA_ADDRESS")
        if bridge_macs is not None:
            bridge_macs[bridge] = bridge_mac
        return was_up, bridge_mac

    def _detach_undo(self, name: str, bridge: str, was_up: bool, bridge_mac: str) -> Undo:
        def detach() -> None:
            self._set(name, master=0, **({} if was_up else {"state": "down"}))
            # A bridge whose MAC is not pinned follows its ports (and drops to all-zero when the
            # last one leaves): put back the address it had before this step.
            if _attr(self._link(bridge), "IFLA_ADDRESS") != bridge_mac:
                self._set(bridge, address=bridge_mac)
        return detach

    def _add_port(self, change: Change, journal: list[Undo]) -> None:
        name, bridge = change.target, change.args["bridge"]
        if change.args.get("bond"):
            self._create_bond(name, change.args["bond"], journal)
        was_up, bridge_mac = self._before_attach(name, bridge)
        # One request per port: attach, and bring it up as Xen's vif-bridge script does (a VIF
        # forwards only when up).
        request(setlink_master(self._idx(name), self._idx(bridge), up=not was_up), self._netns)
        journal.append(self._detach_undo(name, bridge, was_up, bridge_mac))
        self._vlans.pop(name, None)  # a port joining a bridge starts in the default VLAN
        if change.args.get("uplink"):
            self._mark_uplink(name, True, journal, bridge)
        self._configure_vlans(change, journal)

    def _attach_many(self, changes: Sequence[Change], journal: list[Undo]) -> None:
        """Plain attaches (no uplink) sent pipelined: the kernel applies them in order, as one by one."""
        for start in range(0, len(changes), ATTACH_CHUNK):
            chunk = changes[start:start + ATTACH_CHUNK]
            facts, messages = [], []
            bridge_macs: dict[str, str] = {}
            for change in chunk:
                name, bridge = change.target, change.args["bridge"]
                was_up, bridge_mac = self._before_attach(name, bridge, bridge_macs)
                messages.append(setlink_master(self._idx(name), self._idx(bridge), up=not was_up))
                facts.append((name, bridge, was_up, bridge_mac))
            results = send_batch(messages, self._netns)
            for name, *_rest in facts:
                self._vlans.pop(name, None)  # a port joining a bridge starts in the default VLAN
            # No zip(strict=): managed hosts may run Python 3.8; a short answer is caught just below.
            for (name, bridge, was_up, bridge_mac), code in zip(facts, results):  # noqa: B905
                if code == 0:
                    journal.append(self._detach_undo(name, bridge, was_up, bridge_mac))
            if len(results) != len(facts):  # journalled what was acknowledged; the rest is unknown
                raise BackendError(chunk[0].target, {"bridge": chunk[0].args["bridge"]},
                                   f"could not be applied (add_port): the kernel acknowledged {len(results)} "
                                   f"of {len(facts)} requests")
            failed = [(fact, code) for fact, code in zip(facts, results) if code]  # noqa: B905
            if failed:
                (name, bridge, _up, _mac), code = failed[0]
                raise BackendError(name, {"bridge": bridge}, f"could not be applied (add_port): "
                                                             f"{os.strerror(code)}; nothing was changed")

    def _del_port(self, change: Change, journal: list[Undo]) -> None:
        name, bridge = change.target, change.args["bridge"]
        bond = self._read_bond(name) if self._kind(name) == "bond" else None
        if self._is_uplink(name):
            self._mark_uplink(name, False, journal, bridge)
        vlans = self._current_vlans(name)
        if self._light:
            codes = send_batch([setlink_master(self._idx(name), 0, up=False)], self._netns)
            if codes != [0]:
                raise BackendError(name, {"bridge": bridge}, "could not be applied (del_port): "
                                                             f"{os.strerror(codes[0]) if codes else 'no answer'}")
        else:
            self._set(name, master=0)  # the kernel forgets the port's VLANs with it

        def reattach() -> None:
            self._set(name, master=self._idx(bridge))
            if bridge in self._filtering:
                self._vlans[name] = {kv.DEFAULT_VLAN: kv.ACCESS}
                self._program_vlans(name, vlans, [])
        journal.append(reattach)
        if bond is not None:   # the bond existed for this network: its members become plain NICs again
            self._remove_bond(name, bond["members"], journal)

    def _set_port(self, change: Change, journal: list[Undo]) -> None:
        if change.args.get("bond"):
            self._reconfigure_bond(change.target, change.args["bond"], journal)
        if "uplink" in change.args:
            self._mark_uplink(change.target, bool(change.args["uplink"]), journal, change.args["bridge"])
        self._configure_vlans(change, journal)

    def _mark_uplink(self, name: str, uplink: bool, journal: list[Undo], bridge: str) -> None:
        """The uplink (PIF) runs promiscuous, as XenServer's does, and carries the uplink alias.

        On a filtering bridge it also carries every VLAN tagged (and loses them when demoted).
        """
        link = get_link(name, self._netns)
        if link is None:
            raise BackendError("name", name, "does not exist on this host")
        old_alias, old_promisc = link.alias, bool(link.flags & IFF_PROMISC)
        journal.append(lambda: mark_uplink(link.index, old_alias, old_promisc, self._netns))
        mark_uplink(link.index, UPLINK_ALIAS if uplink else None, uplink, self._netns)
        if bridge in self._filtering:
            self._program_vlans(name, kv.entries_for(None, None, None, uplink=uplink), journal)

    # -------------------------------------------------------------------- bonds
    def _kind(self, name: str) -> str:
        known = self._raw.get(name)
        if known is not None:
            return known.kind
        info = self._link(name).get_attr("IFLA_LINKINFO")
        return (info.get_attr("IFLA_INFO_KIND") if info else None) or ""

    def _read_bond(self, name: str, raw: Optional[dict[str, RawLink]] = None) -> Optional[dict[str, Any]]:
        """The record of bonding device ``name`` (None: a mode this collection does not make)."""
        msg = self._link(name)
        data = msg.get_attr("IFLA_LINKINFO").get_attr("IFLA_INFO_DATA")
        values = dict(data["attrs"]) if data else {}
        if raw is None:
            raw = {link.name: link for link in dump_links(self._netns)}
        own = raw.get(name)
        if own is not None and own.bond and IFLA_BOND_AD_LACP_ACTIVE in own.bond:   # newer than pyroute2's table
            values["IFLA_BOND_AD_LACP_ACTIVE"] = own.bond[IFLA_BOND_AD_LACP_ACTIVE]
        names = {link.index: link.name for link in raw.values()}
        members = [link.name for link in sorted(raw.values(), key=_by_index) if link.master == msg["index"]]
        return record_of(values, members, names)

    def bonds(self) -> list[dict[str, Any]]:
        """Each bonding device as the driver runs it: active member, aggregator, members' link (vswitch_info)."""
        raw = {link.name: link for link in dump_links(self._netns)}
        names = {link.index: link.name for link in raw.values()}
        rows = []
        for bond in sorted(name for name, link in raw.items() if link.kind == "bond"):
            members = []
            for link in sorted(raw.values(), key=_by_index):
                if link.master == raw[bond].index:
                    msg = self._ipr.get_links(link.index)[0]
                    info = msg.get_attr("IFLA_LINKINFO")
                    slave = info.get_attr("IFLA_INFO_SLAVE_DATA") if info else None
                    members.append((link.name, bool(_attr(msg, "IFLA_CARRIER", 0)),
                                    dict(slave["attrs"]) if slave else {}))
            data = self._ipr.get_links(raw[bond].index)[0].get_attr("IFLA_LINKINFO").get_attr("IFLA_INFO_DATA")
            values = dict(data["attrs"]) if data else {}
            if "IFLA_BOND_AD_INFO" in values:
                values["IFLA_BOND_AD_INFO"] = dict(values["IFLA_BOND_AD_INFO"]["attrs"])
            rows.append(bond_status(bond, values, members, names))
        return rows

    def _create_bond(self, name: str, record: dict[str, Any], journal: list[Undo]) -> None:
        """A bonding device with ``record``'s options and members (the port attach follows)."""
        self._ipr.link("add", ifname=name, kind="bond", **bond_attrs(record, self._idx))
        journal.append(lambda: self._delete_named(name))
        self._set_lacp_active(name, record)
        self._enslave(name, record["members"], journal)

    def _set_lacp_active(self, name: str, record: dict[str, Any]) -> None:
        """lacp_active as ``record`` declares it, where the kernel has it (older ones: always active, and
        the planner refuses passive there)."""
        attr = lacp_active_attr(record)
        if attr and not self.features.lacp_passive_missing:
            request(changelink(self._idx(name), "bond", attr), self._netns)

    def _enslave(self, bond: str, members: Sequence[str], journal: list[Undo]) -> None:
        for member in members:
            was_up = bool(self._link(member)["flags"] & IFF_UP)
            # The driver enslaves only a member that is down; it brings it up itself, and closes
            # it again on release, so the undo puts back the up state it had.
            self._set(member, state="down")
            journal.append(lambda member=member, was_up=was_up: self._release(member, was_up))
            self._set(member, master=self._idx(bond))
            self._set(member, state="up")

    def _release(self, member: str, up: bool) -> None:
        self._set(member, master=0)
        self._set(member, state="up" if up else "down")

    def _delete_named(self, name: str) -> None:
        """Delete ``name`` (through _delete: see rtnl.dellink) and forget its index."""
        self._delete(self._idx(name))
        self._index.pop(name, None)

    def _remove_bond(self, name: str, members: Sequence[str], journal: list[Undo]) -> None:
        """Delete the bonding device, its members released and up again as the NICs they were."""
        record = self._read_bond(name)
        for member in members:
            self._release(member, True)
        self._delete_named(name)
        journal.append(lambda: self._create_bond(name, record, []) if record else None)

    def _reconfigure_bond(self, name: str, record: dict[str, Any], journal: list[Undo]) -> None:
        """New options or members: released, changed while down (the driver's rule for mode and
        lacp_rate), enslaved again. A brief outage of the bond, as with ip link set ... type bond."""
        old = self._read_bond(name)
        if old == record:
            return
        old_members = old["members"] if old else []
        was_up = bool(self._link(name)["flags"] & IFF_UP)

        def put_back() -> None:
            for member in list(self._members(name)):
                self._release(member, True)
            self._set(name, state="down")
            if old:
                self._set(name, kind="bond", **bond_attrs(old, self._idx))
                self._set_lacp_active(name, old)
            self._enslave(name, old_members, [])
            self._set(name, state="up" if was_up else "down")
        journal.append(put_back)
        for member in old_members:
            self._release(member, True)
        self._set(name, state="down")
        self._set(name, kind="bond", **bond_attrs(record, self._idx))
        self._set_lacp_active(name, record)
        self._enslave(name, record["members"], [])
        self._set(name, state="up" if was_up else "down")

    def _members(self, bond: str) -> list[str]:
        index = self._idx(bond)
        return [link.name for link in dump_links(self._netns) if link.master == index]


def mark_uplink(index: int, alias: Optional[str] = UPLINK_ALIAS, promisc: bool = True,
                netns: Optional[str] = None) -> None:
    """Set a link's uplink marker (alias + promiscuous, one request), or put back what it had instead.

    The bridge role's IP move uses it too, so a bridge the role made has the uplink
    vswitch_bridge would have made (and that a VLAN-filtering bridge gives its VLANs).
    """
    request(setlink(index, alias=alias or "", flags=IFF_PROMISC if promisc else 0, change=IFF_PROMISC), netns)


def _by_index(link: RawLink) -> int:
    return link.index


def _vid(first: int, last: int) -> Any:
    """pyroute2's spelling of one VID or a range of them (it sets the range flags itself)."""
    return first if first == last else f"{first}-{last}"
