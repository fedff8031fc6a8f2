"""The running switch: configuration, bridges, ports and their I/O, changed by transactions.

``transact`` works in three steps so a transaction applies whole or not at all:
1. compute the new configuration (pure; any invalid change raises, nothing touched);
2. prepare everything that can fail (create TAPs, open AF_PACKET sockets, set MTU/MAC)
   and save the state file atomically; on any failure undo exactly those steps;
3. commit: swap the new objects in and close what went away (cannot fail).
"""
from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Sequence
from typing import Any, Optional

from ..errors import BackendError, ConflictError, VswitchError
from ..identity import stable_mac
from . import faults
from . import ports as netdev
from .bond import BondIO
from .config import Config, apply_changes
from .datapath import Bridge, Port
from .db import StateFile
from .fastpath import SYNC_INTERVAL, FastPath
from .fdb import DEFAULT_LIMIT, mac_bytes
from .loop import HANGUP, EventLoop

log = logging.getLogger("vswitchd.switch")

RETRY_INTERVAL = 5.0


def parents_first(bridges: dict[str, dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """Bridges with VLAN networks after the bridges they ride on (the state file sorts by name)."""
    return sorted(bridges.items(), key=lambda item: item[1].get("parent") is not None)


def _io_class(spec: dict[str, Any]) -> str:
    if spec.get("bond") is not None:
        return "bond"
    return "system" if spec["type"] == "system" else "tap"


class RunPort:
    """A configured port and its I/O (``io`` is None while its device is missing)."""

    def __init__(self, name: str, kind: str) -> None:
        self.port = Port(name, kind)
        self.io: Optional[netdev.TapIO | netdev.PacketIO] = None
        self.status = "ok"


class Switch:
    def __init__(self, db: StateFile, fdb_limit: int = DEFAULT_LIMIT, loop: Optional[EventLoop] = None,
                 datapath: str = "auto", xdp_on_veth: bool = False) -> None:
        self.db = db
        self.fdb_limit = fdb_limit
        self.config = Config()
        self.bridges: dict[str, Bridge] = {}
        self.internal: dict[str, RunPort] = {}
        self.ports: dict[str, RunPort] = {}
        self.loop = loop or EventLoop()
        self.owner = netdev.owner_mark(db.path)
        self._last_retry = 0.0
        self.fastpath = FastPath(datapath, self.owner, offload_record=f"{db.path}.rxvlan-off", xdp_on_veth=xdp_on_veth)
        self.loop.every(SYNC_INTERVAL, self._sync_fastpath)

    # -- start-up ---------------------------------------------------------------------------------
    def restore(self) -> None:
        """Bring back every bridge and port of the state file; devices that fail are retried later."""
        config = self.db.load()
        self.config = config
        netdev.remove_orphans(self.owner, set(config.bridges) | set(config.ports), self.loop.closer)
        self.fastpath.remove_stale()
        for name, settings in parents_first(config.bridges):
            self._new_bridge(name, settings)
            internal = RunPort(name, "internal")
            try:
                internal.io = netdev.TapIO(name, internal.port, self.loop, owner=self.owner, mtu=settings["mtu"],
                                           mac=settings["mac"] or stable_mac(name))
            except VswitchError as err:
                internal.status = err.message
                log.error("bridge %s: internal port not restored: %s", name, err.message)
            self._commit_internal(name, internal)
        for name, spec in config.ports.items():
            run = RunPort(name, spec["type"])
            try:
                run.io = self._open_io(name, spec, run.port, config.bridges[spec["bridge"]]["mtu"])
            except VswitchError as err:
                run.status = err.message
                log.error("port %s not restored (will retry): %s", name, err.message)
            self._commit_port(name, run, spec)
        log.info("restored %d bridges and %d ports from %s", len(config.bridges), len(config.ports), self.db.path)

    # -- transactions -----------------------------------------------------------------------------
    def transact(self, changes: Sequence[Any]) -> dict[str, Any]:
        old = self.config
        new = apply_changes(old, changes)
        faults.reached("transact.validated")
        created: dict[str, RunPort] = {}
        internals: dict[str, RunPort] = {}
        undo: list[Callable[[], None]] = []
        try:
            for name, settings in new.bridges.items():
                if name not in old.bridges:
                    run = RunPort(name, "internal")
                    run.io = netdev.TapIO(name, run.port, self.loop, owner=self.owner, mtu=settings["mtu"],
                                          mac=settings["mac"] or stable_mac(name))
                    internals[name] = run
                    faults.reached("transact.internal-created")
                elif self._prepare_bridge_settings(name, old.bridges[name], settings, undo):
                    faults.reached("transact.settings-changed")
            for name, spec in new.ports.items():
                before = old.ports.get(name)
                if before is not None and _io_class(before) != _io_class(spec):
                    raise ConflictError(f"ports.{name}.type", _io_class(spec),
                                        f"cannot replace type '{_io_class(before)}' in place; delete the port "
                                        "first, then add it with the new type")
                if before is None:
                    run = RunPort(name, spec["type"])
                    run.io = self._open_io(name, spec, run.port, new.bridges[spec["bridge"]]["mtu"])
                    created[name] = run
                    faults.reached("transact.port-opened")
            if new != old:
                self.db.save(new)
                faults.reached("transact.saved")
        except Exception as err:  # noqa: BLE001 - whatever failed, undo what was prepared
            closed = [run for run in [*created.values(), *internals.values()] if run.io is not None]
            for run in closed:
                run.io.close(keep=getattr(run.io, "adopted", False))
            # The error says nothing was changed: reply only once the TAPs it created are gone (their
            # closes run in parallel on the closer's threads; this waits for the slowest, not their sum).
            for run in closed:
                self.loop.closer.wait_for(run.port.name)
            for step in reversed(undo):
                try:
                    step()
                except OSError as undo_err:  # pragma: no cover - best effort, logged
                    log.error("rollback step failed: %s", undo_err)
            if isinstance(err, VswitchError):
                raise
            raise BackendError("transaction", len(changes), f"failed: {err}") from err
        self._commit(old, new, created, internals)
        self._sync_fastpath(self.loop.clock(), force=True)   # no frame forwarded on the old VLANs after the reply
        faults.reached("transact.committed")
        return {"changed": new != old, "serial": self.db.serial}

    def _open_io(self, name: str, spec: dict[str, Any], port: Port, mtu: int) -> Any:
        if spec.get("bond") is not None:   # a bond: its members' I/O, run by bond.py
            return BondIO(name, port, self.loop, spec["bond"])
        return netdev.open_io(name, spec["type"], port, self.loop, owner=self.owner, mtu=mtu)

    def _prepare_bridge_settings(self, name: str, old: dict[str, Any], new: dict[str, Any],
                                 undo: list[Callable[[], None]]) -> bool:
        """Change the internal port's MTU/MAC as ``new`` says; True if its device was changed."""
        run = self.internal.get(name)
        if run is None or run.io is None:
            return False
        changed = new["mtu"] != old["mtu"] or new["mac"] != old["mac"]
        if new["mtu"] != old["mtu"]:
            netdev.set_mtu(name, new["mtu"])
            undo.append(lambda: netdev.set_mtu(name, old["mtu"]))
        if new["mac"] != old["mac"]:
            previous = netdev.get_mac(name)
            netdev.set_mac(name, new["mac"] or stable_mac(name))
            undo.append(lambda: netdev.set_mac(name, previous))
        return changed

    def _commit(self, old: Config, new: Config, created: dict[str, RunPort], internals: dict[str, RunPort]) -> None:
        self.config = new  # ports are configured from the new bridges (a VLAN network's tag)
        for name in [p for p in old.ports if p not in new.ports]:
            self._drop_port(name)
            faults.reached("commit.port-dropped")
        for name in [b for b in old.bridges if b not in new.bridges]:
            self._drop_bridge(name)
            faults.reached("commit.bridge-dropped")
        for name, settings in parents_first(new.bridges):
            if name in internals:
                self._new_bridge(name, settings)
                self._commit_internal(name, internals[name])
            elif settings.get("parent") is None:  # a VLAN network's forwarding is its parent's
                bridge = self.bridges[name]
                bridge.set_ageing(float(settings["ageing_time"]))
                bridge.mtu = settings["mtu"]
        for name, spec in new.ports.items():
            if name in created:
                self._commit_port(name, created[name], spec)
            elif old.ports[name] != spec:
                run = self.ports[name]
                if old.ports[name]["bridge"] != spec["bridge"] and run.port.bridge is not None:
                    run.port.bridge.detach(run.port)
                run.port.kind = spec["type"]
                self._configure(run, spec)
                if isinstance(run.io, BondIO) and old.ports[name].get("bond") != spec.get("bond"):
                    run.io.reconfigure(spec["bond"], self.loop.clock())

    def _new_bridge(self, name: str, settings: dict[str, Any]) -> None:
        if settings.get("parent") is not None:
            # A VLAN network forwards inside its parent: its ports are the parent's access ports on its tag,
            # so the parent's uplink carries it tagged and its FDB is the parent's, on that VLAN.
            self.bridges[name] = self.bridges[settings["parent"]]
            return
        self.bridges[name] = Bridge(name, self.fdb_limit, float(settings["ageing_time"]), settings["mtu"])

    def _vlan_of(self, bridge: str) -> Optional[int]:
        """The tag every port of ``bridge`` carries untagged (a VLAN network's), or None."""
        return self.config.bridges[bridge].get("tag")

    def _commit_internal(self, name: str, run: RunPort) -> None:
        self.internal[name] = run
        run.port.configure(vlan=self._vlan_of(name))
        if run.io is not None:
            self.bridges[name].attach(run.port)
            self.loop.register(run.io.fileno(), self._handler(run, run.io))
            self.fastpath.port_ready(run.port, run.io)

    def _commit_port(self, name: str, run: RunPort, spec: dict[str, Any]) -> None:
        self.ports[name] = run
        self._configure(run, spec)
        if isinstance(run.io, BondIO):   # a bond registers its members itself
            self.fastpath.bond_ready(name)
        elif run.io is not None:
            self.loop.register(run.io.fileno(), self._handler(run, run.io))
            self.fastpath.port_ready(run.port, run.io)

    def _configure(self, run: RunPort, spec: dict[str, Any]) -> None:
        tag = self._vlan_of(spec["bridge"])
        run.port.configure(vlan=spec["vlan"] if tag is None else tag, trunks=spec["trunks"],
                           native_vlan=spec["native_vlan"],
                           mac=mac_bytes(spec["mac"]) if spec["mac"] else None,
                           promiscuous=spec["promiscuous"], uplink=spec["uplink"])
        bridge = self.bridges[spec["bridge"]]
        if run.io is None:
            return
        if run.port.bridge is bridge:
            bridge.reconfigured(run.port)
        else:
            bridge.attach(run.port)

    def _handler(self, run: RunPort, io: Any) -> Callable[[int, float], None]:
        """``io``: the port's open io, passed by the callers that just checked it (no assert: python -O)."""

        def handle(events: int, now: float) -> None:
            if events & HANGUP and not io.healthy():
                self._lost(run, "device removed")
                return
            io.receive(now)
        return handle

    def _lost(self, run: RunPort, why: str) -> None:
        if run.io is None:
            return
        log.warning("port %s lost: %s (will retry)", run.port.name, why)
        self._close_io(run)
        run.status = why

    def _close_io(self, run: RunPort, keep: bool = False) -> None:
        if run.port.bridge is not None:
            run.port.bridge.detach(run.port)
        if run.io is not None:
            self.fastpath.port_gone(run.port.name)
            try:
                if not isinstance(run.io, BondIO):
                    self.loop.unregister(run.io.fileno())
            except (OSError, ValueError):
                pass
            run.io.close(keep=keep)
            run.io = None
            run.port.send = run.port.no_io

    def _drop_port(self, name: str, keep: bool = False) -> None:
        run = self.ports.pop(name)
        self._close_io(run, keep)

    def _drop_bridge(self, name: str, keep: bool = False) -> None:
        run = self.internal.pop(name, None)
        if run is not None:
            self._close_io(run, keep)
        self.bridges.pop(name, None)

    # -- housekeeping (called from the main loop about once a second) --------------------------------
    def tick(self, now: float) -> None:
        self.fastpath.refresh()
        for bridge in self.tables().values():
            bridge.fdb.expire(now)
        self.fastpath.sync(now, self.tables(), 0, force=True)
        for run in self.ports.values():
            # Frames stranded behind a slot the kernel dropped never make the socket ready; look for
            # them once a second (a C-level scan of the ring's status bytes when there are none).
            if isinstance(run.io, netdev.PacketIO):
                run.io.receive(now)
        if now - self._last_retry < RETRY_INTERVAL:
            return
        self._last_retry = now
        for name, run in self.ports.items():
            if run.io is None:
                spec = self.config.ports[name]
                try:
                    run.io = self._open_io(name, spec, run.port, self.config.bridges[spec["bridge"]]["mtu"])
                except VswitchError as err:
                    run.status = err.message
                    continue
                log.info("port %s is back", name)
                run.status = "ok"
                self._commit_port(name, run, spec)

    def close(self) -> None:
        """Shut down: detach from every device but leave the TAPs in place for the next start."""
        for name in list(self.ports):
            self._drop_port(name, keep=True)
        for name in list(self.internal):
            self._drop_bridge(name, keep=True)
        self.fastpath.close()
        self.loop.closer.drain()

    def _sync_fastpath(self, now: float, force: bool = False) -> None:
        """The FDB mirror after the slow path handled frames (learning) or a transaction changed ports."""
        slow = sum(run.port.rx_packets for run in self.ports.values()) + self.db.serial
        self.fastpath.sync(now, self.tables(), slow, force)

    # -- reporting --------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        bridges = {}
        for name, settings in sorted(self.config.bridges.items()):
            run = self.internal.get(name)
            mac = settings["mac"]
            if run is not None and run.io is not None:
                try:
                    mac = netdev.get_mac(name)
                except OSError:
                    pass
            bridges[name] = {**settings, "mac": mac or "", "ports": self.config.ports_of(name),
                             "uplink": self.config.uplink_of(name),
                             "status": run.status if run is not None else "missing"}
        ports = {name: {**spec, "status": self.ports[name].status if name in self.ports else "missing"}
                 for name, spec in sorted(self.config.ports.items())}
        links = sorted(name for _index, name in socket.if_nameindex())
        forwarding = {name: self.fastpath.path_of(name) for name in [*bridges, *ports]}
        return {"bridges": bridges, "ports": ports, "links": links, "serial": self.db.serial,
                "forwarding": forwarding}

    def bridge(self, name: str) -> Bridge:
        from ..errors import NotFoundError
        bridge = self.bridges.get(name)
        if bridge is None:
            raise NotFoundError("bridge", name, "is not a bridge of vswitchd")
        return bridge

    def tables(self) -> dict[str, Bridge]:
        """Each forwarding table once, by its bridge's name (a VLAN network shares its parent's)."""
        return {name: bridge for name, bridge in sorted(self.bridges.items())
                if self.config.bridges.get(name, {}).get("parent") is None}

    def fdb_flush(self, name: Optional[str]) -> int:
        """Forget learned entries of ``name`` (every bridge if None); returns how many went.

        A VLAN network shares its parent's table, so it flushes only its tag there; the parent
        (or every bridge) flushes all the VLANs it carries. Static entries stay, as in Fdb.flush.
        """
        if name is None:
            removed = sum(bridge.fdb.flush() for bridge in self.tables().values())
        else:
            removed = self.bridge(name).fdb.flush(self.config.bridges.get(name, {}).get("tag"))
        # The kernel must forget them too, at once: while it forwards a host, Python never sees it to relearn.
        self._sync_fastpath(self.loop.clock(), force=True)
        return removed

    def fdb(self, name: Optional[str], now: float) -> list[dict[str, Any]]:
        names = [name] if name is not None else list(self.tables())
        rows = []
        for bridge_name in names:
            tag = self.config.bridges.get(bridge_name, {}).get("tag")
            for row in self.bridge(bridge_name).fdb_rows(now):
                if tag is not None and row.get("vlan") != tag:
                    continue  # a VLAN network shows its own VLAN of the parent's table
                rows.append({"bridge": bridge_name, **row, "local": row["port"] == bridge_name})
        return rows

    def stats(self, name: Optional[str]) -> list[dict[str, Any]]:
        names = [name] if name is not None else sorted(self.bridges)
        rows = []
        for bridge_name in names:
            self.bridge(bridge_name)
            runs = [self.internal[bridge_name]] if bridge_name in self.internal else []
            runs += [self.ports[p] for p in self.config.ports_of(bridge_name) if p in self.ports]
            for run in runs:
                rows.append({"bridge": bridge_name, "port": run.port.name, "type": run.port.kind,
                             "status": run.status, **with_fast(run.port.counters(),
                                                               self.fastpath.counters(run.port.name))})
        return rows

    def bonds(self, name: Optional[str], what: str = "show") -> list[dict[str, Any]]:
        """Each bond's status (``show``) or LACP state (``lacp``), of one bond or all."""
        from ..errors import NotFoundError
        runs = {n: run for n, run in sorted(self.ports.items()) if self.config.ports[n].get("bond") is not None}
        if name is not None:
            if name not in runs:
                raise NotFoundError("bond", name, "is not a bond of vswitchd")
            runs = {name: runs[name]}
        rows = []
        for bond_name, run in runs.items():
            spec = self.config.ports[bond_name]
            if isinstance(run.io, BondIO):
                row = run.io.show() if what == "show" else run.io.lacp_show()
            else:
                row = {"bond": bond_name, "status": run.status, "members": []}
            rows.append({"bridge": spec["bridge"], **row})
        return rows

    def fdb_summary(self) -> dict[str, Any]:
        return {name: {"learned": len(b.fdb), "limit": b.fdb.limit, "evictions": b.fdb.evictions}
                for name, b in self.tables().items()}


def with_fast(slow: dict[str, int], fast: dict[str, int]) -> dict[str, int]:
    """A port's counters: what Python forwarded plus what the kernel did, and the kernel's part on its own."""
    if not fast:
        return slow
    rows = dict(slow)
    for total, part in (("rx_packets", "fast_rx_packets"), ("rx_bytes", "fast_rx_bytes"),
                        ("tx_packets", "fast_tx_packets"), ("tx_bytes", "fast_tx_bytes"),
                        ("rx_packets", "tc_rx_packets"), ("rx_bytes", "tc_rx_bytes"),
                        ("tx_packets", "tc_tx_packets"), ("tx_bytes", "tc_tx_bytes"), ("filtered", "filtered")):
        rows[total] = rows.get(total, 0) + fast[part]
    for reason in ("security", "bad_src", "bad_vlan"):
        rows[f"drop_{reason}"] = rows.get(f"drop_{reason}", 0) + fast[f"drop_{reason}"]
        rows["rx_dropped"] = rows.get("rx_dropped", 0) + fast[f"drop_{reason}"]
    rows.update({name: value for name, value in fast.items() if name.startswith(("fast_", "tc_"))})
    rows["fast_dropped"] = sum(fast[f"drop_{reason}"] for reason in ("security", "bad_src", "bad_vlan"))
    # The port program passes GSO super-frames up; those the tc path forwarded never reached Python. A port
    # with no port program (the skb path) hands Python only what its socket filter keeps: Python's own count.
    rows["slow_rx_packets"] = slow.get("rx_packets", 0) if fast.get("skb_path") else \
        fast["passed"] - fast["tc_rx_packets"]
    return rows
