"""The two ethtool facts the fast path needs about a device, through the SIOCETHTOOL ioctl, stdlib only.

- its driver (``ETHTOOL_GDRVINFO``), which says whether an 802.1Q tag can reach the device outside
  the frame from another device: a veth's peer with tx VLAN offload, a macvlan's lower NIC;
- its rx VLAN offload (the legacy ``ETHTOOL_GFLAGS``/``ETHTOOL_SFLAGS`` word, ``ETH_FLAG_RXVLAN``),
  which a NIC uses to strip the tag into the skb's metadata, where XDP cannot see it.
"""
from __future__ import annotations

import ctypes
import fcntl
import socket
import struct
from typing import Optional

SIOCETHTOOL = 0x8946
ETHTOOL_GDRVINFO, ETHTOOL_GFLAGS, ETHTOOL_SFLAGS = 0x03, 0x25, 0x26
ETH_FLAG_RXVLAN = 1 << 8
_DRVINFO = struct.Struct("=I32s")      # cmd, driver (the rest of struct ethtool_drvinfo is not read)
_DRVINFO_SIZE = 196
_VALUE = struct.Struct("=II")          # struct ethtool_value: cmd, data


def _ioctl(name: str, buf: ctypes.Array) -> None:
    ifreq = struct.pack("16sP", name.encode(), ctypes.addressof(buf))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        fcntl.ioctl(sock.fileno(), SIOCETHTOOL, ifreq)


def driver(name: str) -> str:
    """The device's driver name ("veth", "tun", "vif", "e1000e", ...), or "" where ethtool has none."""
    buf = ctypes.create_string_buffer(_DRVINFO_SIZE)
    struct.pack_into("=I", buf, 0, ETHTOOL_GDRVINFO)
    try:
        _ioctl(name, buf)
    except OSError:
        return ""
    return _DRVINFO.unpack_from(buf)[1].split(b"\0", 1)[0].decode("ascii", "replace")


def _flags(name: str) -> int:
    buf = ctypes.create_string_buffer(_VALUE.size)
    _VALUE.pack_into(buf, 0, ETHTOOL_GFLAGS, 0)
    _ioctl(name, buf)
    return _VALUE.unpack_from(buf)[1]


def rx_vlan_offload(name: str) -> Optional[bool]:
    """Whether the device strips received 802.1Q tags into metadata (None: it cannot say)."""
    try:
        return bool(_flags(name) & ETH_FLAG_RXVLAN)
    except OSError:
        return None


def set_rx_vlan_offload(name: str, on: bool) -> int:
    """Turn the device's rx VLAN offload on or off, leaving its other flags; 0 or the kernel's errno."""
    try:
        flags = _flags(name)
        wanted = flags | ETH_FLAG_RXVLAN if on else flags & ~ETH_FLAG_RXVLAN
        if wanted != flags:
            buf = ctypes.create_string_buffer(_VALUE.size)
            _VALUE.pack_into(buf, 0, ETHTOOL_SFLAGS, wanted)
            _ioctl(name, buf)
        if bool(_flags(name) & ETH_FLAG_RXVLAN) != on:
            return 95   # EOPNOTSUPP: the driver took the request but kept the offload as it was
    except OSError as err:
        return err.errno or 5
    return 0
