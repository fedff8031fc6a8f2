"""The DHCPv6 half of the collection's DHCP client (``lease_keeper`` runs it beside the DHCPv4 half).

The lease is an IA_NA address, installed as a /128 with its valid and preferred lifetimes (the kernel
drops it when the valid one runs out); routes are not the lease's business in IPv6: the router's
advertisements give the on-link prefix and the default route.
"""
from __future__ import annotations

import time
from typing import Optional

from . import dhcp6, netops
from .lease_keeper import REQUEST_WAIT, LeaseKeeper, say

SOLICIT_WAIT = 15.0   # seconds one Solicit/Request round may take before the keeper pauses and tries again
RENEW_WAIT = 2 * REQUEST_WAIT   # one Renew or Rebind try (its first retransmission comes after 10 s)


def _lifetimes(lease: dhcp6.Lease6) -> dict:
    """What is left of the lease's lifetimes now, as the kernel takes them."""
    def left(seconds: int) -> int:
        if seconds == dhcp6.INFINITY:
            return netops.FOREVER
        return max(0, int(lease.obtained + seconds - time.time()))

    valid = max(1, left(lease.valid)) if lease.valid != dhcp6.INFINITY else netops.FOREVER
    return {"valid_lft": valid, "preferred_lft": min(left(lease.preferred), valid)}


def install(ipr, index: int, lease: dhcp6.Lease6) -> None:
    """The leased address as a /128 with what is left of its lifetimes; the move and the keeper both put
    a lease on the link so. An address already there only has its lifetimes moved on (no second DAD)."""
    times = _lifetimes(lease)
    args = {"index": index, "family": netops.AF_INET6, "address": lease.address, "prefixlen": lease.prefixlen}
    if times["valid_lft"] != netops.FOREVER:
        args["IFA_CACHEINFO"] = {"ifa_valid": times["valid_lft"], "ifa_preferred": times["preferred_lft"],
                                 "cstamp": 0, "tstamp": 0}
    ipr.addr("replace", **args)


class Keeper6(LeaseKeeper):
    suffix = ".lease6"
    lease_type = dhcp6.Lease6
    refused = dhcp6.Dhcp6Refused

    def install(self, lease: dhcp6.Lease6) -> None:
        with netops.iproute() as ipr:
            install(ipr, netops.require_index(ipr, "interface", self.ifname), lease)

    def remove(self, lease: dhcp6.Lease6) -> None:
        with netops.iproute() as ipr:
            index = netops.index_of(ipr, self.ifname)
            if index is not None:
                netops.del_address6(ipr, index, {"address": lease.address, "prefixlen": lease.prefixlen})

    def leased_on_link(self) -> list[dict]:
        with netops.iproute() as ipr:
            index = netops.require_index(ipr, "interface", self.ifname)
            return [a for a in netops.read_addresses6(ipr, index) if dhcp6.is_lease_address(a)]

    def resume_unkept(self, mac: str, kept: Optional[dhcp6.Lease6], leased: list[dict]) -> Optional[dhcp6.Lease6]:
        """Solicit with the address as a hint: the server knows our DUID and IAID (the same as the move's)
        and answers with the binding it has."""
        hint = kept.address if kept else leased[0]["address"]
        try:
            return dhcp6.obtain(self.ifname, dhcp6.Identity.of_mac(mac), SOLICIT_WAIT, hint=hint)
        except dhcp6.Dhcp6Timeout as err:
            say(f"{err}; trying again")
            return None

    def obtain(self, mac: str) -> Optional[dhcp6.Lease6]:
        try:
            return dhcp6.obtain(self.ifname, dhcp6.Identity.of_mac(mac), SOLICIT_WAIT)
        except dhcp6.Dhcp6Timeout as err:
            say(f"{err}; trying again")
            return None

    def renew(self, mac: str, lease: dhcp6.Lease6) -> Optional[dhcp6.Lease6]:
        return dhcp6.renew(self.ifname, dhcp6.Identity.of_mac(mac), lease, RENEW_WAIT)

    def rebind(self, mac: str, lease: dhcp6.Lease6) -> Optional[dhcp6.Lease6]:
        return dhcp6.rebind(self.ifname, dhcp6.Identity.of_mac(mac), lease, RENEW_WAIT)

    def release(self, mac: str, lease: dhcp6.Lease6) -> None:
        dhcp6.release(self.ifname, dhcp6.Identity.of_mac(mac), lease)
