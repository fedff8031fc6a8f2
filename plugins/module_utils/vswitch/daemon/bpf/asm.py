"""A small eBPF assembler: instructions as functions, jumps to named labels, map fds as ld_imm64.

Each function returns one ``Insn`` (two for ``ld_imm64``/``ld_map_fd``); a ``Program`` collects
them, records labels and resolves every jump's offset when it is assembled into the bytes
``BPF_PROG_LOAD`` takes (``struct bpf_insn``: u8 code, u4 dst, u4 src, s16 off, s32 imm).
Registers are plain ints: R0 (return value / helper result), R1-R5 (helper arguments,
clobbered by calls), R6-R9 (kept across calls), R10 (read-only frame pointer).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import List, Optional, Union

R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10 = range(11)

# Instruction classes, sizes, modes, sources.
LD, LDX, ST, STX, ALU, JMP, JMP32, ALU64 = range(8)
SIZE = {1: 0x10, 2: 0x08, 4: 0x00, 8: 0x18}
MEM, IMM = 0x60, 0x00
K, X = 0x00, 0x08
ALU_OPS = {"add": 0x00, "sub": 0x10, "mul": 0x20, "div": 0x30, "or": 0x40, "and": 0x50, "lsh": 0x60,
           "rsh": 0x70, "neg": 0x80, "mod": 0x90, "xor": 0xA0, "mov": 0xB0, "arsh": 0xC0}
JMP_OPS = {"ja": 0x00, "jeq": 0x10, "jgt": 0x20, "jge": 0x30, "jset": 0x40, "jne": 0x50, "jsgt": 0x60,
           "jsge": 0x70, "jlt": 0xA0, "jle": 0xB0, "jslt": 0xC0, "jsle": 0xD0}
CALL, EXIT, END, TO_BE = 0x80, 0x90, 0xD0, 0x08
PSEUDO_MAP_FD = 1

# Helper function ids (include/uapi/linux/bpf.h, ``___BPF_FUNC_MAPPER``).
MAP_LOOKUP_ELEM, MAP_UPDATE_ELEM, MAP_DELETE_ELEM, KTIME_GET_NS = 1, 2, 3, 5
SKB_STORE_BYTES, SKB_VLAN_PUSH, SKB_VLAN_POP, REDIRECT, SKB_CHANGE_HEAD, XDP_ADJUST_HEAD = 9, 18, 19, 23, 43, 44
REDIRECT_MAP, SKB_LOAD_BYTES_RELATIVE = 51, 68

_INSN = struct.Struct("<BBhi")


@dataclass
class Insn:
    code: int
    dst: int = 0
    src: int = 0
    off: int = 0
    imm: int = 0
    target: Optional[str] = None   # a label this jump goes to; resolved by Program.assemble

    def encode(self) -> bytes:
        return _INSN.pack(self.code, (self.src << 4) | self.dst, self.off, self.imm)


Item = Union[Insn, List[Insn]]


def _alu(op: str, dst: int, value: int, is_reg: bool, wide: bool) -> Insn:
    cls = ALU64 if wide else ALU
    if is_reg:
        return Insn(cls | ALU_OPS[op] | X, dst, value)
    return Insn(cls | ALU_OPS[op] | K, dst, imm=value)


def alu64(op: str, dst: int, imm: int) -> Insn:
    """``dst op= imm`` on 64 bits (``op``: add, sub, and, or, lsh, rsh, mov, ...)."""
    return _alu(op, dst, imm, False, True)


def alu64_reg(op: str, dst: int, src: int) -> Insn:
    return _alu(op, dst, src, True, True)


def alu32(op: str, dst: int, imm: int) -> Insn:
    return _alu(op, dst, imm, False, False)


def alu32_reg(op: str, dst: int, src: int) -> Insn:
    return _alu(op, dst, src, True, False)


def mov(dst: int, imm: int) -> Insn:
    return alu64("mov", dst, imm)


def mov_reg(dst: int, src: int) -> Insn:
    return alu64_reg("mov", dst, src)


def be16(dst: int) -> Insn:
    """Convert the low 16 bits of ``dst`` between host (little) and network order; upper bits cleared."""
    return Insn(ALU | END | TO_BE, dst, imm=16)


def load(size: int, dst: int, src: int, off: int) -> Insn:
    """``dst = *(u<size*8> *)(src + off)``."""
    return Insn(LDX | MEM | SIZE[size], dst, src, off)


def store(size: int, dst: int, off: int, src: int) -> Insn:
    """``*(u<size*8> *)(dst + off) = src`` (a register)."""
    return Insn(STX | MEM | SIZE[size], dst, src, off)


def store_imm(size: int, dst: int, off: int, imm: int) -> Insn:
    return Insn(ST | MEM | SIZE[size], dst, 0, off, imm)


def _s32(value: int) -> int:
    """The 32 bits as ``struct bpf_insn``'s signed imm holds them."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def ld_imm64(dst: int, value: int, src: int = 0) -> list[Insn]:
    return [Insn(LD | IMM | SIZE[8], dst, src, imm=_s32(value)), Insn(0, imm=_s32(value >> 32))]


def ld_map_fd(dst: int, fd: int) -> list[Insn]:
    """Load a map's address: the verifier turns the fd into the map pointer."""
    return ld_imm64(dst, fd, PSEUDO_MAP_FD)


def jump(label: str) -> Insn:
    return Insn(JMP | JMP_OPS["ja"], target=label)


def jump_if(op: str, dst: int, imm: int, label: str) -> Insn:
    """``if dst <op> imm goto label`` (64-bit compare; ``op``: jeq, jne, jgt, jset, ...)."""
    return Insn(JMP | JMP_OPS[op] | K, dst, imm=imm, target=label)


def jump_if_reg(op: str, dst: int, src: int, label: str) -> Insn:
    return Insn(JMP | JMP_OPS[op] | X, dst, src, target=label)


def call(helper: int) -> Insn:
    return Insn(JMP | CALL, imm=helper)


def exit_() -> Insn:
    return Insn(JMP | EXIT)


class AssemblyError(ValueError):
    pass


class Program:
    """Instructions and labels; ``assemble`` resolves jump offsets (in instructions, from the next one)."""

    def __init__(self) -> None:
        self.insns: list[Insn] = []
        self.labels: dict = {}

    def emit(self, *items: Item) -> Program:
        for item in items:
            if isinstance(item, list):
                self.insns.extend(item)
            else:
                self.insns.append(item)
        return self

    def label(self, name: str) -> Program:
        if name in self.labels:
            raise AssemblyError(f"label {name!r} defined twice")
        self.labels[name] = len(self.insns)
        return self

    def __len__(self) -> int:
        return len(self.insns)

    def assemble(self) -> bytes:
        out = bytearray()
        for index, insn in enumerate(self.insns):
            if insn.target is not None:
                where = self.labels.get(insn.target)
                if where is None:
                    raise AssemblyError(f"jump to undefined label {insn.target!r} at instruction {index}")
                insn.off = where - index - 1
                if not -32768 <= insn.off <= 32767:
                    raise AssemblyError(f"jump to {insn.target!r} at instruction {index} is out of range")
            out += insn.encode()
        return bytes(out)
