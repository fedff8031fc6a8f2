"""The collection's own DHCP client for a bridge that carries the host's IP, for hosts that have none.

Run as ``python3 -m vswitch.hostnet.lease_keeper BRIDGE --state-dir DIR`` by the unit
``openvif-dhcp@BRIDGE.service`` (the bridge role installs it only when no client of the host's own
renews the lease). It renews at T1 (unicast to the server), rebinds at T2 (broadcast), starts over
with DISCOVER when the lease ran out, and releases the lease when stopped. The lease is kept in
``DIR/BRIDGE.lease`` (JSON, replaced atomically), so a restart resumes it instead of asking anew.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from typing import Optional

from .. import atomic
from . import dhcp, netops

RTPROT_DHCP = 16
RETRY_FLOOR = 5.0     # seconds between tries at the least (RFC 2131 4.4.5 says 60; short leases need less)
REQUEST_WAIT = 4.0    # seconds one REQUEST waits for its answer


def say(message: str) -> None:
    sys.stdout.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {message}\n")
    sys.stdout.flush()


def lease_path(state_dir: str, ifname: str) -> str:
    return os.path.join(state_dir, f"{ifname}.lease")


def load(path: str) -> Optional[dhcp.Lease]:
    text = netops.read_file(path)
    if not text:
        return None
    try:
        return dhcp.Lease.from_dict(json.loads(text))
    except (ValueError, TypeError):
        return None  # a damaged file is no lease: ask again


def save(path: str, lease: Optional[dhcp.Lease]) -> None:
    if lease is None:
        netops.write_file_atomic(path, None)
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o700, exist_ok=True)
    atomic.write(path, json.dumps(lease.to_dict(), indent=1, sort_keys=True))


class Keeper:
    """One interface's lease: obtained, installed with its remaining lifetime, renewed, released."""

    def __init__(self, ifname: str, state_dir: str, release_on_stop: bool = True) -> None:
        self.ifname = ifname
        self.path = lease_path(state_dir, ifname)
        self.release_on_stop = release_on_stop
        self.stopping = threading.Event()
        self.lease: Optional[dhcp.Lease] = None

    # -- the link --
    def _link(self) -> tuple[int, str, list[dict]]:
        with netops.iproute() as ipr:
            index = netops.require_index(ipr, "interface", self.ifname)
            mac = ipr.get_links(index)[0].get("IFLA_ADDRESS")
            return index, mac, netops.read_addresses(ipr, index)

    def install(self, lease: dhcp.Lease) -> None:
        """The address with what is left of the lease (the kernel drops it when that runs out), and the
        default route through the lease's router."""
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
        self.lease = lease
        save(self.path, lease)

    # -- the states of RFC 2131 --
    def start(self) -> None:
        """Resume the kept lease, confirm the one the link has (left by the move), or ask anew."""
        _index, mac, addresses = self._link()
        kept = load(self.path)
        now = time.time()
        on_link = {(a["address"], a["prefixlen"]) for a in addresses}
        if kept and kept.expires > now and (kept.address, kept.prefixlen) in on_link:
            say(f"resuming the lease of {kept.address} from {self.path} ({int(kept.expires - now)} s left)")
            self.lease = kept
            return
        leased = [a for a in addresses if a["valid_lft"] != netops.FOREVER]
        if kept or leased:
            guess = kept or dhcp.Lease(address=leased[0]["address"], prefixlen=leased[0]["prefixlen"], server="",
                                       lease_time=leased[0]["valid_lft"], obtained=now)
            try:
                confirmed = dhcp.reboot(self.ifname, mac, guess, REQUEST_WAIT * 2)
            except dhcp.LeaseRefused as err:
                say(f"INIT-REBOOT: {err}")
                confirmed = None
            if confirmed:
                say(f"confirmed {confirmed.address} for {confirmed.lease_time} s (server {confirmed.server})")
                self.install(confirmed)
                return
        self.discover()

    def discover(self) -> None:
        while not self.stopping.is_set():
            _index, mac, _addresses = self._link()
            try:
                lease = dhcp.obtain_lease(self.ifname, mac, 15.0)
            except dhcp.DhcpTimeout as err:
                say(f"{err}; trying again")
                self.stopping.wait(RETRY_FLOOR)
                continue
            say(f"obtained {lease.address}/{lease.prefixlen} for {lease.lease_time} s (server {lease.server})")
            self.install(lease)
            return

    def _extend(self, how) -> bool:
        if self.lease is None:
            return False
        _index, mac, _addresses = self._link()
        try:
            renewed = how(self.ifname, mac, self.lease, REQUEST_WAIT)
        except dhcp.LeaseRefused as err:
            say(f"{how.__name__}: {err}; starting over")
            self.drop()
            self.discover()
            return True
        if renewed is None:
            return False
        if renewed.address != self.lease.address:
            say(f"{how.__name__}: the server gave {renewed.address} instead of {self.lease.address}")
        say(f"{how.__name__}: {renewed.address} extended for {renewed.lease_time} s (server {renewed.server})")
        self.install(renewed)
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
            if not self._extend(dhcp.renew):
                self.stopping.wait(max(RETRY_FLOOR, min(60.0, (lease.t2 - time.time()) / 2)))
            return
        if now < lease.expires:
            if not self._extend(dhcp.rebind):
                self.stopping.wait(max(1.0, min(RETRY_FLOOR, (lease.expires - time.time()) / 2)))
            return
        say(f"the lease of {lease.address} ran out with no server answering; starting over")
        self.drop()
        self.discover()

    def drop(self) -> None:
        lease, self.lease = self.lease, None
        save(self.path, None)
        if lease is None:
            return
        with netops.iproute() as ipr:
            index = netops.index_of(ipr, self.ifname)
            if index is not None:
                try:
                    ipr.addr("del", index=index, address=lease.address, prefixlen=lease.prefixlen)
                except Exception as err:  # already gone with its lifetime
                    if getattr(err, "code", None) != 99:
                        raise

    def stop(self) -> None:
        if self.lease and self.release_on_stop:
            _index, mac, _addresses = self._link()
            dhcp.release(self.ifname, mac, self.lease)
            say(f"released {self.lease.address}")
            self.drop()

    def run(self) -> None:
        self.start()
        while not self.stopping.is_set():
            if self.lease is None:
                self.discover()
                continue
            self.step()
        self.stop()


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(prog="openvif-dhcp", description=__doc__.splitlines()[0])
    parser.add_argument("interface")
    parser.add_argument("--state-dir", default="/var/lib/openvif/dhcp")
    parser.add_argument("--no-release", action="store_true", help="keep the lease when stopped")
    args = parser.parse_args(argv)
    keeper = Keeper(args.interface, args.state_dir, release_on_stop=not args.no_release)

    def on_signal(signum, frame) -> None:  # pylint: disable=unused-argument
        keeper.stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    keeper.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
