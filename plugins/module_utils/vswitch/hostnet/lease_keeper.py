"""The collection's own DHCP client for a bridge that carries the host's IP, for hosts that have none.

Run as ``python3 -m vswitch.hostnet.lease_keeper BRIDGE --state-dir DIR [--families 4,6]`` by the unit
``openvif-dhcp@BRIDGE.service`` (the bridge role installs it only when no client of the host's own
renews the lease, and says per bridge which families it keeps). For each family, in its own thread, it
renews at T1 (DHCPv4: unicast to the server; DHCPv6: Renew naming the server), rebinds at T2, starts
over (DISCOVER, Solicit) when the lease ran out, and releases the lease when stopped. The leases are kept
in ``DIR/BRIDGE.lease`` and ``DIR/BRIDGE.lease6`` (JSON, replaced atomically), so a restart resumes
them instead of asking anew. DHCPv6 is in ``lease_keeper6``.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from typing import Any, Optional

from .. import atomic
from . import dhcp, netops

RTPROT_DHCP = 16
RETRY_FLOOR = 5.0     # seconds between tries at the least (RFC 2131 4.4.5 says 60; short leases need less)
REQUEST_WAIT = 4.0    # seconds one REQUEST waits for its answer
LINK_POLL = 1.0       # seconds between looks for an interface that is not there yet


def say(message: str) -> None:
    sys.stdout.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {message}\n")
    sys.stdout.flush()


def lease_path(state_dir: str, ifname: str, suffix: str = ".lease") -> str:
    return os.path.join(state_dir, f"{ifname}{suffix}")


def load(path: str, kind: Any = dhcp.Lease) -> Any:
    """The lease kept in ``path`` (a ``dhcp.Lease`` or a ``dhcp6.Lease6``), or None."""
    text = netops.read_file(path)
    if not text:
        return None
    try:
        return kind.from_dict(json.loads(text))
    except (ValueError, TypeError):
        return None  # a damaged file is no lease: ask again


def save(path: str, lease: Any) -> None:
    if lease is None:
        netops.write_file_atomic(path, None)
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o700, exist_ok=True)
    atomic.write(path, json.dumps(lease.to_dict(), indent=1, sort_keys=True))


class LeaseKeeper:
    """One family's lease on one interface: obtained, installed with its remaining lifetime, renewed at T1,
    rebound at T2, asked anew when it ran out, released on stop. The family's client and how its lease
    is put on the link come from the subclass; the states and their timing are the same for both."""

    suffix = ".lease"
    lease_type: Any = dhcp.Lease
    refused: Any = dhcp.LeaseRefused

    def __init__(self, ifname: str, state_dir: str, release_on_stop: bool = True,
                 stopping: Optional[threading.Event] = None) -> None:
        self.ifname = ifname
        self.path = lease_path(state_dir, ifname, self.suffix)
        self.release_on_stop = release_on_stop
        self.stopping = stopping or threading.Event()
        self.lease: Any = None

    # -- what differs between the families --
    def install(self, lease: Any) -> None:
        raise NotImplementedError

    def remove(self, lease: Any) -> None:
        raise NotImplementedError

    def leased_on_link(self) -> list[dict]:
        """The link's addresses of this family that have a lifetime (a lease's)."""
        raise NotImplementedError

    def resume_unkept(self, mac: str, kept: Any, leased: list[dict]) -> Any:
        """A lease for the address the link has (the move left it) or the kept one that can no longer be
        resumed as it is (expired, or not on the link), asked of the server; None when it says no."""
        raise NotImplementedError

    def obtain(self, mac: str) -> Any:
        raise NotImplementedError

    def renew(self, mac: str, lease: Any) -> Any:
        raise NotImplementedError

    def rebind(self, mac: str, lease: Any) -> Any:
        raise NotImplementedError

    def release(self, mac: str, lease: Any) -> None:
        raise NotImplementedError

    # -- the link --
    def _mac(self) -> str:
        with netops.iproute() as ipr:
            index = netops.require_index(ipr, "interface", self.ifname)
            return ipr.get_links(index)[0].get("IFLA_ADDRESS")

    def _keep(self, lease: Any) -> None:
        self.install(lease)
        self.lease = lease
        save(self.path, lease)

    # -- the states --
    def start(self) -> None:
        """Resume the kept lease, confirm the one the link has (left by the move), or ask anew."""
        mac = self._mac()
        kept = load(self.path, self.lease_type)
        now = time.time()
        leased = self.leased_on_link()
        on_link = {(a["address"], a["prefixlen"]) for a in leased}
        if kept and kept.expires > now and (kept.address, kept.prefixlen) in on_link:
            say(f"resuming the lease of {kept.address} from {self.path} ({int(kept.expires - now)} s left)")
            self.lease = kept
            return
        if kept or leased:
            confirmed = self.resume_unkept(mac, kept, leased)
            if confirmed:
                say(f"confirmed {confirmed.address} for {self._lifetime(confirmed)} s (server {confirmed.server})")
                self._keep(confirmed)
                return
        self.discover()

    @staticmethod
    def _lifetime(lease: Any) -> int:
        return getattr(lease, "lease_time", None) or getattr(lease, "valid", 0)

    def discover(self) -> None:
        while not self.stopping.is_set():
            lease = self.obtain(self._mac())
            if lease is None:
                self.stopping.wait(RETRY_FLOOR)
                continue
            say(f"obtained {lease.address}/{lease.prefixlen} for {self._lifetime(lease)} s (server {lease.server})")
            self._keep(lease)
            return

    def _extend(self, how) -> bool:
        if self.lease is None:
            return False
        try:
            renewed = how(self._mac(), self.lease)
        except self.refused as err:
            say(f"{how.__name__}: {err}; starting over")
            self.drop()
            self.discover()
            return True
        if renewed is None:
            return False
        if renewed.address != self.lease.address:
            say(f"{how.__name__}: the server gave {renewed.address} instead of {self.lease.address}")
            self.remove(self.lease)
        say(f"{how.__name__}: {renewed.address} extended for {self._lifetime(renewed)} s (server {renewed.server})")
        self._keep(renewed)
        return True

    def step(self) -> None:
        """Wait for the next deadline (T1, T2 or expiry) and act on it."""
        lease = self.lease
        if lease is None:
            return
        now = time.time()
        if now < lease.t1:
            self.stopping.wait(lease.t1 - now)
            return
        if now < lease.t2:
            if not self._extend(self.renew):
                self.stopping.wait(max(RETRY_FLOOR, min(60.0, (lease.t2 - time.time()) / 2)))
            return
        if now < lease.expires:
            if not self._extend(self.rebind):
                self.stopping.wait(max(1.0, min(RETRY_FLOOR, (lease.expires - time.time()) / 2)))
            return
        say(f"the lease of {lease.address} ran out with no server answering; starting over")
        self.drop()
        self.discover()

    def drop(self) -> None:
        lease, self.lease = self.lease, None
        save(self.path, None)
        if lease is not None:
            self.remove(lease)

    def stop(self) -> None:
        if self.lease and self.release_on_stop:
            self.release(self._mac(), self.lease)
            say(f"released {self.lease.address}")
            self.drop()

    def wait_for_link(self) -> None:
        """At boot the unit may start before the bridge exists (openvif-boot or vswitchd makes it, and a
        container has no udev device units to order on): wait for it instead of failing."""
        said = False
        while not self.stopping.is_set():
            with netops.iproute() as ipr:
                if netops.index_of(ipr, self.ifname) is not None:
                    return
            if not said:
                say(f"waiting for {self.ifname} to appear")
                said = True
            self.stopping.wait(LINK_POLL)

    def run(self) -> None:
        self.wait_for_link()
        if self.stopping.is_set():
            return
        self.start()
        while not self.stopping.is_set():
            if self.lease is None:
                self.discover()
                continue
            self.step()
        self.stop()


class Keeper(LeaseKeeper):
    """DHCPv4 (RFC 2131): the address with its lifetime and the default route through the lease's router."""

    def install(self, lease: dhcp.Lease) -> None:
        left = max(1, int(lease.expires - time.time()))
        with netops.iproute() as ipr:
            index = netops.require_index(ipr, "interface", self.ifname)
            for addr in netops.read_addresses(ipr, index):
                if (addr["address"], addr["prefixlen"]) != (lease.address, lease.prefixlen):
                    ipr.addr("del", index=index, address=addr["address"], prefixlen=addr["prefixlen"])
            ipr.addr("replace", index=index, address=lease.address, prefixlen=lease.prefixlen,
                     IFA_CACHEINFO={"ifa_valid": left, "ifa_preferred": left, "cstamp": 0, "tstamp": 0})
            if lease.routers:
                netops.add_route(ipr, {"dst": "0.0.0.0", "dst_len": 0, "gateway": lease.routers[0],
                                       "dev": self.ifname, "proto": RTPROT_DHCP, "scope": 0, "type": 1})

    def remove(self, lease: dhcp.Lease) -> None:
        with netops.iproute() as ipr:
            index = netops.index_of(ipr, self.ifname)
            if index is not None:
                try:
                    ipr.addr("del", index=index, address=lease.address, prefixlen=lease.prefixlen)
                except Exception as err:  # already gone with its lifetime
                    if getattr(err, "code", None) != 99:
                        raise

    def leased_on_link(self) -> list[dict]:
        with netops.iproute() as ipr:
            index = netops.require_index(ipr, "interface", self.ifname)
            return [a for a in netops.read_addresses(ipr, index) if a["valid_lft"] != netops.FOREVER]

    def resume_unkept(self, mac: str, kept: Optional[dhcp.Lease], leased: list[dict]) -> Optional[dhcp.Lease]:
        guess = kept or dhcp.Lease(address=leased[0]["address"], prefixlen=leased[0]["prefixlen"], server="",
                                   lease_time=leased[0]["valid_lft"], obtained=time.time())
        try:
            return dhcp.reboot(self.ifname, mac, guess, REQUEST_WAIT * 2)  # INIT-REBOOT
        except dhcp.LeaseRefused as err:
            say(f"INIT-REBOOT: {err}")
            return None

    def obtain(self, mac: str) -> Optional[dhcp.Lease]:
        try:
            return dhcp.obtain_lease(self.ifname, mac, 15.0)
        except dhcp.DhcpTimeout as err:
            say(f"{err}; trying again")
            return None

    def renew(self, mac: str, lease: dhcp.Lease) -> Optional[dhcp.Lease]:
        return dhcp.renew(self.ifname, mac, lease, REQUEST_WAIT)

    def rebind(self, mac: str, lease: dhcp.Lease) -> Optional[dhcp.Lease]:
        return dhcp.rebind(self.ifname, mac, lease, REQUEST_WAIT)

    def release(self, mac: str, lease: dhcp.Lease) -> None:
        dhcp.release(self.ifname, mac, lease)


FAMILIES_ENV = "OPENVIF_DHCP_FAMILIES"   # the unit's per-bridge drop-in sets it: "4", "6" or "4,6"


def keepers(ifname: str, state_dir: str, families: str, release_on_stop: bool,
            stopping: threading.Event) -> list[LeaseKeeper]:
    # imported here: lease_keeper6 builds on this module
    from .lease_keeper6 import Keeper6  # pylint: disable=import-outside-toplevel
    kinds = {"4": Keeper, "6": Keeper6}
    chosen = [item.strip() for item in families.split(",") if item.strip()]
    bad = [item for item in chosen if item not in kinds]
    if bad or not chosen:
        raise SystemExit(f"openvif-dhcp: --families {families!r}: say 4, 6 or 4,6")
    return [kinds[item](ifname, state_dir, release_on_stop, stopping) for item in dict.fromkeys(chosen)]


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(prog="openvif-dhcp", description=__doc__.splitlines()[0])
    parser.add_argument("interface")
    parser.add_argument("--state-dir", default="/var/lib/openvif/dhcp")
    parser.add_argument("--families", default=os.environ.get(FAMILIES_ENV) or "4",
                        help=f"which leases to keep: 4, 6 or 4,6 (default: ${FAMILIES_ENV}, else 4)")
    parser.add_argument("--no-release", action="store_true", help="keep the lease when stopped")
    args = parser.parse_args(argv)
    stopping = threading.Event()
    running = keepers(args.interface, args.state_dir, args.families, not args.no_release, stopping)

    def on_signal(signum, frame) -> None:  # pylint: disable=unused-argument
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    failed: list[BaseException] = []

    def run(keeper: LeaseKeeper) -> None:
        try:
            keeper.run()
        except BaseException as err:  # one family failing takes the unit down: systemd restarts it
            failed.append(err)
            stopping.set()
            raise

    threads = [threading.Thread(target=run, args=(keeper,), name=type(keeper).__name__) for keeper in running]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        for thread in threads:
            thread.join(0.5)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
