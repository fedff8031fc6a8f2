"""The DHCPv6 identity ISC dhclient leased the uplink's address with, read from its lease file, and given on.

dhclient -6 makes its DUID once (a DUID-LLT by default: type, hardware type, time, MAC) and keeps it in its
lease file as ``default-duid "<octal-escaped bytes>";``; each ``lease6`` block names its IA as
``ia-na xx:xx:xx:xx``. A server ties its binding to both: a move that asked from the bridge with another
DUID (the collection's DUID-LL) would be handed another address, which replaces the carried one and ends
the sessions on it. So the move asks with dhclient's identity, and the command that renews on the bridge
afterwards (dhclient's, its file names moved to the bridge's as ifup would name them) finds that DUID at
the top of its own lease file.
"""
from __future__ import annotations

import os
import re
from typing import Any, Optional

from .. import atomic
from . import clients, dhcp6, netops

DEFAULT_LEASE_FILE = "/var/lib/dhcp/dhclient6.leases"   # dhclient -6 without -lf
_DEFAULT_DUID = re.compile(r'^\s*default-duid\s+"((?:[^"\\]|\\.)*)"\s*;', re.MULTILINE)
_IA_NA = re.compile(r"^\s*ia-na\s+([0-9a-fA-F]{1,2}(?::[0-9a-fA-F]{1,2}){3})\s*\{", re.MULTILINE)
_CLIENT_ID = re.compile(r"^\s*option\s+dhcp6\.client-id\s+([0-9a-fA-F:]+)\s*;", re.MULTILINE)


def is_dhclient6(argv: list[str]) -> bool:
    """ISC dhclient serving DHCPv6 (which family a command line serves is ``clients.families``' rule)."""
    return bool(argv) and os.path.basename(argv[0]) == "dhclient" and 6 in clients.families(argv)


def _after(argv: list[str], flag: str) -> Optional[str]:
    for i, arg in enumerate(argv[1:-1], start=1):
        if arg == flag:
            return argv[i + 1]
    return None


def lease_file(argv: list[str]) -> str:
    return _after(argv, "-lf") or DEFAULT_LEASE_FILE


def unquote(text: str) -> bytes:
    """dhclient's quoted string (its quotify_buf): printable bytes as they are, ``\\"`` and ``\\\\``
    escaped, every other byte as three octal digits."""
    out, i = bytearray(), 0
    while i < len(text):
        if text[i] == "\\" and text[i + 1:i + 4].isdigit() and len(text[i + 1:i + 4]) == 3:
            out.append(int(text[i + 1:i + 4], 8) & 0xFF)
            i += 4
        elif text[i] == "\\" and i + 1 < len(text):
            out += text[i + 1].encode("latin-1")
            i += 2
        else:
            out += text[i].encode("latin-1")
            i += 1
    return bytes(out)


def quote(data: bytes) -> str:
    """The inverse of ``unquote``, as dhclient writes it."""
    out = []
    for byte in data:
        char = chr(byte)
        if char in '"\\':
            out.append("\\" + char)
        elif 0x20 <= byte < 0x7F:
            out.append(char)
        else:
            out.append(f"\\{byte:03o}")
    return "".join(out)


def _octets(text: str) -> bytes:
    return bytes(int(part, 16) for part in text.split(":"))


def parse(text: str) -> Optional[dict[str, Any]]:
    """The DUID (``default-duid``, else the last lease's client-id) and the last lease's IAID in a lease
    file's text; None without a DUID. The last block is the newest: dhclient appends."""
    duids = _DEFAULT_DUID.findall(text)
    duid = unquote(duids[-1]) if duids else None
    if duid is None:
        ids = _CLIENT_ID.findall(text)
        duid = _octets(ids[-1]) if ids else None
    if not duid:
        return None
    ias = _IA_NA.findall(text)
    return {"duid": duid, "iaid": int.from_bytes(_octets(ias[-1]), "big") if ias else None}


def identity(dhcp_clients: list[dict[str, Any]], mac: str) -> Optional[dhcp6.Identity]:
    """The identity the uplink's dhclient -6 leased with, from its lease file; its IAID where the file has
    none is dhclient's own choice, the MAC's last four octets (as ``dhcp6.iaid``). None: no dhclient -6 or
    no DUID in its file (the collection's DUID-LL serves)."""
    for client in dhcp_clients:
        if not is_dhclient6(client["argv"]):
            continue
        found = parse(netops.read_file(lease_file(client["argv"])) or "")
        if found:
            return dhcp6.Identity(found["duid"], found["iaid"] if found["iaid"] is not None else dhcp6.iaid(mac))
    return None


def seed(argv: list[str], who: dhcp6.Identity) -> None:
    """Before ``argv`` (a dhclient -6 for the bridge) starts: its lease file begins with ``who``'s DUID
    where it names none, so dhclient takes it instead of making a new one."""
    if not is_dhclient6(argv):
        return
    path = lease_file(argv)
    text = netops.read_file(path)
    if text is not None and _DEFAULT_DUID.search(text):
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic.write(path, f'default-duid "{quote(who.duid)}";\n' + (text or ""))   # ASCII: quote escapes the rest
