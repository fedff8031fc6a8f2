"""Synthetic frames for datapath tests: ``[virtio_net_hdr | Ethernet frame]`` as the ports deliver them."""
from __future__ import annotations

import struct
from pathlib import Path

VNET = 10
MODULE_UTILS = Path(__file__).resolve().parents[3] / "plugins" / "module_utils"


def mac(text: str) -> bytes:
    return bytes(int(part, 16) for part in text.split(":"))


def frame(dst: str, src: str, *, vlan: int | None = None, pcp: int = 0, ethertype: int = 0x0800,
          payload: bytes = b"x" * 46, vnet: bytes = b"\0" * VNET, tpid: int = 0x8100) -> bytearray:
    tag = struct.pack("!HH", tpid, (pcp << 13) | vlan) if vlan is not None else b""
    return bytearray(vnet + mac(dst) + mac(src) + tag + struct.pack("!H", ethertype) + payload)


def parse(data: bytes) -> dict:
    """Addresses, tag and payload of a frame a port sent (vnet header included)."""
    body = bytes(data[VNET:])
    out = {"dst": body[0:6], "src": body[6:12], "vlan": None, "pcp": None, "vnet": bytes(data[:VNET])}
    ethertype = struct.unpack("!H", body[12:14])[0]
    rest = body[14:]
    if ethertype == 0x8100:
        tci = struct.unpack("!H", body[14:16])[0]
        out["vlan"], out["pcp"] = tci & 0xFFF, tci >> 13
        ethertype = struct.unpack("!H", body[16:18])[0]
        rest = body[18:]
    out["ethertype"], out["payload"] = ethertype, rest
    return out


class Wire:
    """Stands in for a port's I/O: records what the datapath sends."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send(self, view) -> None:
        self.sent.append(bytes(view))

    def take(self) -> list[bytes]:
        out, self.sent = self.sent, []
        return out
