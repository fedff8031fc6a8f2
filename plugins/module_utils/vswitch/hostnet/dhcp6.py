"""A small DHCPv6 client (RFC 8415) for one identity association of non-temporary addresses (IA_NA).

Solicit/Advertise/Request/Reply, or Solicit/Reply where the server allows Rapid Commit; Renew at T1
(to the server that gave the lease), Rebind at T2 (to any server), Release when stopped. DHCPv6 gives
addresses only: the prefix's on-link route and the default route come from router advertisements
(the M flag says "addresses from DHCPv6"), so the address is installed as a /128, as every
distribution's client does.

Why UDP on the link-local address, not AF_PACKET as the IPv4 client: a DHCPv6 client talks from its
link-local address to ff02::1:2 (RFC 8415 7.1), which the bridge has as soon as it is up; the kernel's
own stack is therefore usable from the start.

The client's identity (``Identity``) is, unless the host's own client had another, a DUID-LL of the
bridge's MAC (the uplink's, which the bridge carries) and an IAID taken from the same MAC: both stay the
same across restarts and moves without a file, so the server recognises the binding it already has and
hands the same address back. Where the uplink's dhclient leased with its own DUID, the move speaks with
that one instead (``dhclient6``): a server ties the address to the DUID.
"""
from __future__ import annotations

import ipaddress
import random
import select
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional

from .dhcp import KeptLease
from .probe import _mac_bytes

CLIENT_PORT, SERVER_PORT = 546, 547
ALL_SERVERS = "ff02::1:2"   # All_DHCP_Relay_Agents_and_Servers
INFINITY = 0xFFFFFFFF

# message types (RFC 8415 7.3)
SOLICIT, ADVERTISE, REQUEST, CONFIRM, RENEW, REBIND, REPLY, RELEASE, DECLINE = 1, 2, 3, 4, 5, 6, 7, 8, 9
# options (RFC 8415 21, RFC 3646)
OPT_CLIENTID, OPT_SERVERID, OPT_IA_NA, OPT_IAADDR, OPT_ORO, OPT_PREFERENCE = 1, 2, 3, 5, 6, 7
OPT_ELAPSED_TIME, OPT_STATUS_CODE, OPT_RAPID_COMMIT = 8, 13, 14
OPT_DNS_SERVERS, OPT_DOMAIN_LIST, OPT_SOL_MAX_RT = 23, 24, 82
# status codes (RFC 8415 21.13)
SUCCESS, UNSPEC_FAIL, NO_ADDRS_AVAIL, NO_BINDING, NOT_ON_LINK, USE_MULTICAST = 0, 1, 2, 3, 4, 5
DUID_LL, HWTYPE_ETHERNET = 3, 1

# Retransmission parameters (RFC 8415 7.6): initial and maximum timeout, seconds.
SOL_TIMEOUT, SOL_MAX_RT = 1.0, 3600.0
REQ_TIMEOUT, REQ_MAX_RT, REQ_MAX_RC = 1.0, 30.0, 10
REN_TIMEOUT, REN_MAX_RT = 10.0, 600.0
REB_TIMEOUT, REB_MAX_RT = 10.0, 600.0
REL_TIMEOUT, REL_MAX_RC = 1.0, 4


class Dhcp6Timeout(Exception):
    """No lease within the time allowed."""


class Dhcp6Refused(Exception):
    """The server says the binding is gone or the address is not valid here (NoBinding, NotOnLink, lifetime 0)."""


@dataclass
class Lease6(KeptLease):
    address: str
    server_id: str                      # the server's DUID, hex: Renew and Release name it
    iaid: int
    valid: int                          # seconds after ``obtained``
    preferred: int
    renew_after: int                    # T1 (seconds after ``obtained``)
    rebind_after: int                   # T2
    server: str = ""                    # the link-local address that answered (for the log)
    dns: list[str] = field(default_factory=list)
    domains: list[str] = field(default_factory=list)
    obtained: float = 0.0
    prefixlen: int = 128

    @property
    def t1(self) -> float:
        return self.obtained + self.renew_after

    @property
    def t2(self) -> float:
        return self.obtained + self.rebind_after

    @property
    def expires(self) -> float:
        return self.obtained + self.valid


def is_lease_address(addr: dict[str, Any]) -> bool:
    """A DHCPv6 address as the kernel shows one (``netops.read_addresses6``): a /128 with a lifetime. SLAAC
    addresses carry their prefix (/64), static ones are permanent; every distribution's client (dhclient,
    networkd, NetworkManager, dhcpcd) and this one install IA_NA addresses as /128."""
    return addr["prefixlen"] == 128 and addr["valid_lft"] != INFINITY


# -- identity --

def duid(mac: str) -> bytes:
    """DUID-LL (RFC 8415 11.4): type 3, hardware type 1 (Ethernet), the MAC."""
    return struct.pack("!HH", DUID_LL, HWTYPE_ETHERNET) + _mac_bytes(mac)


def iaid(mac: str) -> int:
    """The IA's identifier: the MAC's last four octets, the same for this interface on every start."""
    return struct.unpack("!I", _mac_bytes(mac)[2:])[0]


@dataclass(frozen=True)
class Identity:
    """Who the client is to a server: its DUID and its IA's identifier, to which the server ties the binding
    (and so the address it hands out)."""
    duid: bytes
    iaid: int

    @classmethod
    def of_mac(cls, mac: str) -> Identity:
        return cls(duid(mac), iaid(mac))

    def to_dict(self) -> dict[str, Any]:
        return {"duid": self.duid.hex(), "iaid": self.iaid}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Identity:
        return cls(bytes.fromhex(data["duid"]), int(data["iaid"]))


# -- the wire format --

def option(code: int, value: bytes) -> bytes:
    return struct.pack("!HH", code, len(value)) + value


def parse_options(data: bytes) -> list[tuple[int, bytes]]:
    """Options in order (a code may repeat: several IA_NA, several IAADDR); a truncated one ends the list."""
    out, i = [], 0
    while i + 4 <= len(data):
        code, length = struct.unpack("!HH", data[i:i + 4])
        if i + 4 + length > len(data):
            break
        out.append((code, data[i + 4:i + 4 + length]))
        i += 4 + length
    return out


def _first(options: list[tuple[int, bytes]], code: int) -> Optional[bytes]:
    return next((value for c, value in options if c == code), None)


def ia_na(ia: int, addresses: list[tuple[str, int, int]] = (), t1: int = 0, t2: int = 0) -> bytes:
    """IA_NA with IAADDR options (address, preferred, valid); T1/T2 0 leaves them to the server (18.2)."""
    inner = b"".join(option(OPT_IAADDR, ipaddress.IPv6Address(addr).packed + struct.pack("!II", pref, valid))
                     for addr, pref, valid in addresses)
    return option(OPT_IA_NA, struct.pack("!III", ia, t1, t2) + inner)


def build_message(kind: int, xid: int, who: Identity, elapsed: float = 0.0, server_id: Optional[bytes] = None,
                  addresses: list[tuple[str, int, int]] = (), rapid_commit: bool = False) -> bytes:
    """One client message: Client Identifier, Elapsed Time (every message, 21.9), the IA_NA, and an
    Option Request for DNS (with SOL_MAX_RT, which 18.2.1 says a Solicit's ORO must name)."""
    if not 0 <= xid < 1 << 24:
        raise ValueError(f"transaction id {xid} does not fit in 24 bits")
    parts = [option(OPT_CLIENTID, who.duid),
             option(OPT_ELAPSED_TIME, struct.pack("!H", min(0xFFFF, int(elapsed * 100))))]
    if server_id is not None:
        parts.append(option(OPT_SERVERID, server_id))
    parts.append(ia_na(who.iaid, list(addresses)))
    if kind != RELEASE:
        wanted = [OPT_DNS_SERVERS, OPT_DOMAIN_LIST] + ([OPT_SOL_MAX_RT] if kind == SOLICIT else [])
        parts.append(option(OPT_ORO, b"".join(struct.pack("!H", code) for code in wanted)))
    if rapid_commit:
        parts.append(option(OPT_RAPID_COMMIT, b""))
    return struct.pack("!I", (kind << 24) | xid) + b"".join(parts)


def _status(options: list[tuple[int, bytes]]) -> tuple[int, str]:
    value = _first(options, OPT_STATUS_CODE)
    if value is None or len(value) < 2:
        return SUCCESS, ""
    return struct.unpack("!H", value[:2])[0], value[2:].decode("utf-8", "replace")


def _domains(value: bytes) -> list[str]:
    """RFC 1035 names, uncompressed (RFC 8415 10)."""
    names, labels, i = [], [], 0
    while i < len(value):
        length = value[i]
        i += 1
        if length == 0:
            if labels:
                names.append(".".join(labels))
            labels = []
            continue
        labels.append(value[i:i + length].decode("ascii", "replace"))
        i += length
    return names


def parse_message(data: bytes) -> Optional[dict[str, Any]]:
    """A server message: type, transaction id, server and client DUIDs, preference, top-level status,
    rapid commit, DNS, and every IA_NA as {iaid, t1, t2, status, addresses: [(address, preferred, valid)]}."""
    if len(data) < 4 or data[0] not in (ADVERTISE, REPLY):
        return None
    options = parse_options(data[4:])
    ias = []
    for code, value in options:
        if code != OPT_IA_NA or len(value) < 12:
            continue
        ia, t1, t2 = struct.unpack("!III", value[:12])
        inner = parse_options(value[12:])
        addresses = []
        for inner_code, addr in inner:
            if inner_code == OPT_IAADDR and len(addr) >= 24:
                pref, valid = struct.unpack("!II", addr[16:24])
                status = _status(parse_options(addr[24:]))[0]
                if status == SUCCESS:
                    addresses.append((str(ipaddress.IPv6Address(addr[:16])), pref, valid))
        ias.append({"iaid": ia, "t1": t1, "t2": t2, "status": _status(inner), "addresses": addresses})
    dns = _first(options, OPT_DNS_SERVERS) or b""
    preference = _first(options, OPT_PREFERENCE)
    return {
        "type": data[0],
        "xid": struct.unpack("!I", b"\x00" + data[1:4])[0],
        "server_id": _first(options, OPT_SERVERID),
        "client_id": _first(options, OPT_CLIENTID),
        "preference": preference[0] if preference else 0,
        "status": _status(options),
        "rapid_commit": _first(options, OPT_RAPID_COMMIT) is not None,
        "dns": [str(ipaddress.IPv6Address(dns[i:i + 16])) for i in range(0, len(dns) - len(dns) % 16, 16)],
        "domains": _domains(_first(options, OPT_DOMAIN_LIST) or b""),
        "ias": ias,
    }


def lease_from(reply: dict[str, Any], ia: int, server: str = "") -> Lease6:
    """The lease a Reply grants for our IA; raises Dhcp6Refused when it grants none (status or lifetime 0)."""
    ours = next((entry for entry in reply["ias"] if entry["iaid"] == ia), None)
    if ours is None:
        raise Dhcp6Refused("the reply has no IA_NA for this client")
    code, text = ours["status"]
    if code != SUCCESS:
        raise Dhcp6Refused(f"status {code} ({text or 'no message'})")
    usable = [entry for entry in ours["addresses"] if entry[2] > 0]
    if not usable:
        raise Dhcp6Refused("no address with a valid lifetime")
    address, preferred, valid = usable[0]
    preferred = min(preferred, valid)
    # T1/T2 of 0: the client chooses (21.4 recommends 0.5 and 0.8 of the shortest preferred lifetime)
    t1 = ours["t1"] if ours["t1"] else int(preferred * 0.5)
    t2 = ours["t2"] if ours["t2"] else int(preferred * 0.8)
    if valid != INFINITY:
        t1, t2 = min(t1, valid), min(t2, valid)
    return Lease6(address=address, server_id=(reply["server_id"] or b"").hex(), iaid=ia, valid=valid,
                  preferred=preferred, renew_after=min(t1, t2), rebind_after=t2, server=server,
                  dns=reply["dns"], domains=reply["domains"], obtained=time.time())


# -- exchanges --

def _first_timeout(irt: float, first_solicit: bool) -> float:
    """RT = IRT + RAND*IRT, RAND in [-0.1, 0.1]; a first Solicit's RAND is strictly positive (15)."""
    rand = random.uniform(0.0001, 0.1) if first_solicit else random.uniform(-0.1, 0.1)
    return irt + rand * irt


def _next_timeout(rt: float, mrt: float) -> float:
    rt = 2 * rt + random.uniform(-0.1, 0.1) * rt
    return mrt + random.uniform(-0.1, 0.1) * mrt if rt > mrt else rt


class _Socket:
    """UDP port 546 on one interface; messages to ff02::1:2 leave from its link-local address."""

    def __init__(self, ifname: str) -> None:
        self.scope = socket.if_nametoindex(ifname)
        self.sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
            self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, self.scope)
            self.sock.bind(("::", CLIENT_PORT))
        except OSError:
            self.sock.close()
            raise

    def send(self, message: bytes) -> None:
        self.sock.sendto(message, (ALL_SERVERS, SERVER_PORT, 0, self.scope))

    def close(self) -> None:
        self.sock.close()


Pick = Callable[[Dict[str, Any], str], Optional[Any]]   # typing.Dict: evaluated at import, on Python 3.8 too


def exchange(ifname: str, who: Identity, build: Callable[[int, float], bytes], pick: Pick, timeout: float,
             irt: float, mrt: float, mrc: int = 0, collect: Optional[Callable[[], Optional[Any]]] = None) -> Any:
    """One transaction of RFC 8415 15: send, retransmit with back-off (IRT, MRT, MRC), and return the first
    ``pick(message, peer)`` that is not None, or None when ``timeout`` (the MRD) has passed. ``collect``:
    after the first RT, a Solicit settles for the best Advertise it has heard (18.2.1)."""
    xid = random.SystemRandom().getrandbits(24)
    own = who.duid
    channel = _Socket(ifname)
    started = time.monotonic()
    deadline = started + timeout
    rt = _first_timeout(irt, build(xid, 0)[0] == SOLICIT)
    sent = 0
    try:
        while True:
            now = time.monotonic()
            if now >= deadline or (mrc and sent >= mrc):
                return None
            try:
                channel.send(build(xid, now - started))
            except OSError:
                pass  # the link-local address is not ready yet: the next retransmission may be
            sent += 1
            until = min(deadline, now + rt)
            while True:
                left = until - time.monotonic()
                if left <= 0:
                    break
                if not select.select([channel.sock], [], [], left)[0]:
                    break
                data, peer = channel.sock.recvfrom(4096)
                message = parse_message(data)
                if not message or message["xid"] != xid or message["client_id"] != own or not message["server_id"]:
                    continue  # not ours, or not valid (16: a server message names both DUIDs)
                found = pick(message, peer[0].split("%")[0])
                if found is not None:
                    return found
            if collect is not None:
                best = collect()
                if best is not None:
                    return best
            rt = _next_timeout(rt, mrt)
    finally:
        channel.close()


def _usable(message: dict[str, Any], ia: int) -> bool:
    """An Advertise worth requesting from: no top-level NoAddrsAvail, our IA with an address."""
    if message["status"][0] == NO_ADDRS_AVAIL:
        return False
    return any(entry["iaid"] == ia and entry["status"][0] == SUCCESS and entry["addresses"]
               for entry in message["ias"])


def _solicit(ifname: str, who: Identity, timeout: float, hint: Optional[str]) -> Optional[tuple[str, dict, str]]:
    """("committed", Reply, peer) under Rapid Commit, ("advertised", Advertise, peer) of the best server,
    or None within ``timeout``."""
    ia = who.iaid
    wanted = [(hint, 0, 0)] if hint else []
    heard: list[tuple[dict[str, Any], str]] = []

    def solicited(message: dict[str, Any], peer: str) -> Optional[tuple[str, dict, str]]:
        if message["type"] == REPLY and message["rapid_commit"]:
            return ("committed", message, peer)
        if message["type"] == ADVERTISE and _usable(message, ia):
            heard.append((message, peer))
            if message["preference"] == 255:
                return ("advertised", message, peer)  # the most a server can be preferred: take it now
        return None

    def best() -> Optional[tuple[str, dict, str]]:
        if not heard:
            return None
        message, peer = max(heard, key=lambda item: item[0]["preference"])
        return ("advertised", message, peer)

    return exchange(ifname, who, lambda xid, elapsed: build_message(
        SOLICIT, xid, who, elapsed, addresses=wanted, rapid_commit=True), solicited, timeout,
        SOL_TIMEOUT, SOL_MAX_RT, collect=best)


def _request(ifname: str, who: Identity, advertise: dict[str, Any], timeout: float) -> Optional[Lease6]:
    """Request the address the Advertise offered from the server that sent it (18.2.2)."""
    ia = who.iaid
    server_id = advertise["server_id"]
    offered = [(entry[0], 0, 0) for entry in next(e for e in advertise["ias"] if e["iaid"] == ia)["addresses"][:1]]
    reply = exchange(ifname, who, lambda xid, elapsed: build_message(
        REQUEST, xid, who, elapsed, server_id=server_id, addresses=offered),
        lambda m, p: (m, p) if m["type"] == REPLY else None, timeout, REQ_TIMEOUT, REQ_MAX_RT, REQ_MAX_RC)
    return None if reply is None else lease_from(reply[0], ia, reply[1])


def obtain(ifname: str, who: Identity, timeout: float, hint: Optional[str] = None) -> Lease6:
    """Solicit (with Rapid Commit), then Request from the best server unless it committed at once;
    bounded by ``timeout`` in all; raises Dhcp6Timeout. ``hint``: the address we had (servers may honour it)."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise Dhcp6Timeout(f"no DHCPv6 lease on {ifname} within {timeout:g} s")
        answer = _solicit(ifname, who, left, hint)
        if answer is None:
            continue
        how, message, peer = answer
        try:
            if how == "committed":
                return lease_from(message, who.iaid, peer)
            lease = _request(ifname, who, message, max(0.0, deadline - time.monotonic()))
            if lease is not None:
                return lease
        except Dhcp6Refused:
            continue  # NotOnLink, NoAddrsAvail...: start over with Solicit (18.2.10.1)


def _extend(kind: int, ifname: str, who: Identity, lease: Lease6, timeout: float) -> Optional[Lease6]:
    server_id = bytes.fromhex(lease.server_id) if kind == RENEW else None
    irt, mrt = (REN_TIMEOUT, REN_MAX_RT) if kind == RENEW else (REB_TIMEOUT, REB_MAX_RT)
    reply = exchange(ifname, who, lambda xid, elapsed: build_message(
        kind, xid, who, elapsed, server_id=server_id, addresses=[(lease.address, 0, 0)]),
        lambda m, p: (m, p) if m["type"] == REPLY else None, timeout, irt, mrt)
    if reply is None:
        return None
    return lease_from(reply[0], lease.iaid, reply[1])


def renew(ifname: str, who: Identity, lease: Lease6, timeout: float) -> Optional[Lease6]:
    """Renew (after T1): to the server that gave the lease, named by its DUID. None: no answer in time;
    raises Dhcp6Refused when the server no longer has the binding (NoBinding) or drops the address."""
    return _extend(RENEW, ifname, who, lease, timeout)


def rebind(ifname: str, who: Identity, lease: Lease6, timeout: float) -> Optional[Lease6]:
    """Rebind (after T2): the same without a server DUID, for any server that can extend it."""
    return _extend(REBIND, ifname, who, lease, timeout)


def release(ifname: str, who: Identity, lease: Lease6, timeout: float = 3.0) -> bool:
    """Release to the server (18.2.7); waits (bounded) for its Reply. The address goes either way."""
    try:
        reply = exchange(ifname, who, lambda xid, elapsed: build_message(
            RELEASE, xid, who, elapsed, server_id=bytes.fromhex(lease.server_id),
            addresses=[(lease.address, 0, 0)]),
            lambda m, p: True if m["type"] == REPLY else None, timeout, REL_TIMEOUT, REL_TIMEOUT, REL_MAX_RC)
    except OSError:
        return False
    return bool(reply)
