"""The bpf() system call through ctypes: maps (create, lookup, update, delete, iterate), program load
(with the verifier's log kept for the error), and ``BPF_PROG_TEST_RUN``.

Every object is a file descriptor: closing it (``close``) lets the kernel free the map or program
once nothing else (an attached device, a program using the map) holds it.
"""
from __future__ import annotations

import ctypes
import os
import platform
import struct
from typing import Iterator, Optional

# x86_64 and aarch64 numbers; other architectures report BPF as unavailable.
_SYS_BPF = {"x86_64": 321, "aarch64": 280}.get(platform.machine(), -1)
MAP_CREATE, MAP_LOOKUP_ELEM, MAP_UPDATE_ELEM, MAP_DELETE_ELEM, MAP_GET_NEXT_KEY, PROG_LOAD = 0, 1, 2, 3, 4, 5
PROG_TEST_RUN, PROG_GET_FD_BY_ID, OBJ_GET_INFO_BY_FD, LINK_CREATE = 10, 13, 15, 28
MAP_HASH, MAP_ARRAY, MAP_PERCPU_HASH, MAP_PERCPU_ARRAY, MAP_HASH_OF_MAPS, MAP_DEVMAP, MAP_DEVMAP_HASH = (
    1, 2, 5, 6, 13, 14, 25)
PROG_SOCKET_FILTER, PROG_SCHED_CLS, PROG_XDP = 1, 3, 6
ATTACH_XDP_DEVMAP = 33          # enum bpf_attach_type: a devmap entry's egress program
ATTACH_TCX_INGRESS = 46         # a tc program on a device's ingress, held by a link (Linux 6.6 and later)
SO_ATTACH_BPF, SO_DETACH_BPF = 50, 27
TEST_XDP_LIVE_FRAMES = 1 << 1   # BPF_PROG_TEST_RUN sends what the program redirects, for real
ANY, NOEXIST, EXIST = 0, 1, 2
LOG_SIZE = 1 << 20
# struct __sk_buff (include/uapi/linux/bpf.h): its size and the offsets the programs and test runs use.
SKB_CTX_SIZE = 192
SKB_LEN, SKB_PKT_TYPE, SKB_VLAN_PRESENT, SKB_VLAN_TCI, SKB_VLAN_PROTO = 0, 4, 20, 24, 28
SKB_IFINDEX, SKB_HASH, SKB_GSO_SEGS, SKB_GSO_SIZE = 40, 68, 164, 176

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
ATTR_SIZE = 128


class BpfError(OSError):
    """A bpf() call the kernel refused; ``log`` holds the verifier's output for a program load."""

    def __init__(self, errno: int, what: str, log: str = "") -> None:
        super().__init__(errno, f"{what}: {os.strerror(errno)}" + (f"\n{log}" if log else ""))
        self.what = what
        self.log = log


def bpf(cmd: int, attr: ctypes.Array, what: str) -> int:
    if _SYS_BPF < 0:
        raise BpfError(38, what)   # ENOSYS
    result = _libc.syscall(_SYS_BPF, cmd, ctypes.byref(attr), ctypes.sizeof(attr))
    if result < 0:
        raise BpfError(ctypes.get_errno(), what)
    return result


def _attr(fmt: str, *values: object) -> ctypes.Array:
    buf = ctypes.create_string_buffer(ATTR_SIZE)
    struct.pack_into(fmt, buf, 0, *values)
    return buf


def _addr(buf: Optional[ctypes.Array]) -> int:
    return ctypes.addressof(buf) if buf is not None else 0


def possible_cpus() -> int:
    """Per-CPU maps hold one value per *possible* CPU (``/sys/devices/system/cpu/possible``)."""
    try:
        with open("/sys/devices/system/cpu/possible", encoding="ascii") as handle:
            text = handle.read().strip()
    except OSError:
        return os.cpu_count() or 1
    count = 0
    for part in text.split(","):
        low, _dash, high = part.partition("-")
        count += int(high or low) - int(low) + 1
    return count


class Map:
    """A BPF map: fixed-size byte keys and values (per-CPU maps: one value per possible CPU, 8-byte aligned)."""

    def __init__(self, kind: int, key_size: int, value_size: int, max_entries: int, name: str = "",
                 flags: int = 0, inner: Optional[Map] = None) -> None:
        # ``inner``: for a map of maps, the map every value must look like (type, sizes, max_entries).
        attr = _attr("IIIIIII16s", kind, key_size, value_size, max_entries, flags, inner.fd if inner else 0, 0,
                     name.encode()[:15])
        self.fd = bpf(MAP_CREATE, attr, f"creating map {name or kind}")
        self.kind = kind
        self.key_size = key_size
        self.value_size = value_size
        self.max_entries = max_entries
        self.name = name
        self.cpus = possible_cpus() if kind in (MAP_PERCPU_HASH, MAP_PERCPU_ARRAY) else 0
        self._value_stride = (value_size + 7) & ~7

    @property
    def stored_value_size(self) -> int:
        return self._value_stride * self.cpus if self.cpus else self.value_size

    def _elem(self, cmd: int, key: bytes, value: Optional[ctypes.Array], flags: int, what: str) -> None:
        if len(key) != self.key_size:
            raise ValueError(f"map {self.name}: key of {len(key)} bytes, expected {self.key_size}")
        kbuf = ctypes.create_string_buffer(key, self.key_size)
        bpf(cmd, _attr("I4xQQQ", self.fd, _addr(kbuf), _addr(value), flags), f"{what} in map {self.name}")

    def update(self, key: bytes, value: bytes, flags: int = ANY) -> None:
        if len(value) != self.stored_value_size:
            raise ValueError(f"map {self.name}: value of {len(value)} bytes, expected {self.stored_value_size}")
        self._elem(MAP_UPDATE_ELEM, key, ctypes.create_string_buffer(value, len(value)), flags, "update")

    def lookup(self, key: bytes) -> Optional[bytes]:
        vbuf = ctypes.create_string_buffer(self.stored_value_size)
        try:
            self._elem(MAP_LOOKUP_ELEM, key, vbuf, 0, "lookup")
        except BpfError as err:
            if err.errno == 2:   # ENOENT
                return None
            raise
        return vbuf.raw

    def lookup_percpu(self, key: bytes) -> list:
        """A per-CPU map's value for each possible CPU (empty if the key is absent)."""
        raw = self.lookup(key)
        if raw is None:
            return []
        return [raw[i * self._value_stride:i * self._value_stride + self.value_size] for i in range(self.cpus)]

    def delete(self, key: bytes) -> bool:
        try:
            self._elem(MAP_DELETE_ELEM, key, None, 0, "delete")
        except BpfError as err:
            if err.errno == 2:
                return False
            raise
        return True

    def keys(self) -> Iterator[bytes]:
        kbuf = ctypes.create_string_buffer(self.key_size)
        nbuf = ctypes.create_string_buffer(self.key_size)
        first = True
        while True:
            try:
                bpf(MAP_GET_NEXT_KEY, _attr("I4xQQ", self.fd, 0 if first else _addr(kbuf), _addr(nbuf)),
                    f"iterating map {self.name}")
            except BpfError as err:
                if err.errno == 2:
                    return
                raise
            first = False
            ctypes.memmove(kbuf, nbuf, self.key_size)
            yield nbuf.raw

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Prog:
    """A loaded (verified, JIT-compiled) program."""

    def __init__(self, kind: int, code: bytes, name: str = "", license_: str = "GPL", flags: int = 0,
                 attach_type: int = 0) -> None:
        insns = ctypes.create_string_buffer(code, len(code))
        lic = ctypes.create_string_buffer(license_.encode())
        log = ctypes.create_string_buffer(LOG_SIZE)
        attr = _attr("IIQQIIQII16sII", kind, len(code) // 8, _addr(insns), _addr(lic), 1, LOG_SIZE, _addr(log),
                     0, flags, name.encode()[:15], 0, attach_type)
        try:
            self.fd = bpf(PROG_LOAD, attr, f"loading program {name}")
        except BpfError as err:
            text = log.value.decode("utf-8", "replace")
            raise BpfError(err.errno, f"the kernel refused program {name}", _tail(text)) from None
        self.name = name

    def test_run(self, data: bytes, ingress_ifindex: int = 0, repeat: int = 1, live: bool = False) -> tuple:
        """Run on ``data`` (``BPF_PROG_TEST_RUN``): (return code, the frame as the program left it).

        ``live``: frames the program redirects are really sent (``BPF_F_TEST_XDP_LIVE_FRAMES``), devmap
        egress programs included; the kernel then reports neither return code nor frame: (0, b"").
        """
        ctx = struct.pack("6I", 0, len(data), 0, ingress_ifindex, 0, 0) if ingress_ifindex else None
        return self._test_run(data, ctx, repeat, TEST_XDP_LIVE_FRAMES if live else 0)

    def test_run_skb(self, data: bytes, ifindex: int = 0, gso_size: int = 0, gso_segs: int = 0) -> tuple:
        """A socket filter's or tc program's run on ``data`` as an skb received on ``ifindex``:
        (return code, the frame as the program left it). ``gso_size``: the skb is a GSO super-frame."""
        ctx = bytearray(SKB_CTX_SIZE)
        struct.pack_into("I", ctx, SKB_IFINDEX, ifindex)
        struct.pack_into("I", ctx, SKB_GSO_SIZE, gso_size)
        struct.pack_into("I", ctx, SKB_GSO_SEGS, gso_segs)
        return self._test_run(data, bytes(ctx), 1, 0)

    def _test_run(self, data: bytes, ctx: Optional[bytes], repeat: int, flags: int) -> tuple:
        live = bool(flags & TEST_XDP_LIVE_FRAMES)
        inbuf = ctypes.create_string_buffer(data, len(data))
        outbuf = ctypes.create_string_buffer(len(data) + 256)
        attr = _attr("IIIIQQII", self.fd, 0, len(data), 0 if live else len(outbuf), _addr(inbuf),
                     0 if live else _addr(outbuf), repeat, 0)
        ctx_buf = ctypes.create_string_buffer(ctx, len(ctx)) if ctx is not None else None
        if ctx_buf is not None:
            struct.pack_into("IIQQ", attr, 40, len(ctx_buf), 0, _addr(ctx_buf), 0)
        struct.pack_into("I", attr, 64, flags)
        bpf(PROG_TEST_RUN, attr, f"test run of program {self.name}")
        if live:
            return 0, b""
        retval, _in, size_out = struct.unpack_from("III", attr, 4)
        return retval, outbuf.raw[:size_out]

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def tcx_attach(prog_fd: int, ifindex: int) -> int:
    """Attach a tc program to the device's ingress with a link; the link's fd (closing it detaches)."""
    return bpf(LINK_CREATE, _attr("IIII", prog_fd, ifindex, ATTACH_TCX_INGRESS, 0), f"tcx link on {ifindex}")


def prog_name(prog_id: int) -> Optional[str]:
    """The name a loaded program was given (``bpf_prog_info.name``), or None if it is gone."""
    try:
        fd = bpf(PROG_GET_FD_BY_ID, _attr("I", prog_id), f"opening program {prog_id}")
    except BpfError:
        return None
    try:
        info = ctypes.create_string_buffer(80)   # struct bpf_prog_info up to and with name[16] (at 64)
        bpf(OBJ_GET_INFO_BY_FD, _attr("IIQ", fd, len(info), _addr(info)), f"reading program {prog_id}")
        return info.raw[64:80].split(b"\0", 1)[0].decode("ascii", "replace")
    except BpfError:
        return None
    finally:
        os.close(fd)


def _tail(text: str, lines: int = 40) -> str:
    """The end of a verifier log: where it stopped and why."""
    rows = text.rstrip("\n").splitlines()
    return "\n".join(rows[-lines:])
