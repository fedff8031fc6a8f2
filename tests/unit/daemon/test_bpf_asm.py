"""The eBPF assembler and loader against the real kernel: jumps, maps, verifier refusals, test runs."""
from __future__ import annotations

import struct

import pytest
from bpf_env import why_no_bpf
from vswitch.daemon.bpf import asm, syscall
from vswitch.daemon.bpf.asm import R0, R1, R2, R3, R4, R10

REASON = why_no_bpf()
needs_bpf = pytest.mark.skipif(bool(REASON), reason=REASON or "ok")


def test_jump_offsets_count_from_the_next_instruction():
    prog = asm.Program()
    prog.emit(asm.jump("end"), asm.mov(R0, 1)).label("end").emit(asm.exit_())
    code = prog.assemble()
    code_, regs, off, imm = struct.unpack_from("<BBhi", code, 0)
    assert (code_, off) == (0x05, 1)
    assert len(code) == 3 * 8


def test_ld_imm64_takes_two_slots_and_marks_map_fds():
    insns = asm.ld_map_fd(R1, 7)
    assert len(insns) == 2
    assert insns[0].code == 0x18 and insns[0].src == asm.PSEUDO_MAP_FD and insns[0].imm == 7


def test_undefined_and_duplicate_labels_are_errors():
    prog = asm.Program().emit(asm.jump("nowhere"), asm.exit_())
    with pytest.raises(asm.AssemblyError, match="nowhere"):
        prog.assemble()
    with pytest.raises(asm.AssemblyError, match="twice"):
        asm.Program().label("a").label("a")


@needs_bpf
def test_a_program_runs_and_returns_its_value():
    prog = syscall.Prog(syscall.PROG_XDP, asm.Program().emit(asm.mov(R0, 1), asm.exit_()).assemble(), "xp_drop")
    try:
        retval, data = prog.test_run(bytes(64))
        assert retval == 1 and data == bytes(64)
    finally:
        prog.close()


@needs_bpf
def test_a_64_bit_constant_with_high_bits_in_both_halves_is_written_whole():
    value = 0xF1E2D3C4B5A69788   # both 32-bit halves have their top bit set (signed imm fields)
    # Written over the frame's first 8 bytes (after the bounds check the verifier wants), then XDP_PASS.
    source = asm.Program().emit(asm.mov(R0, 2), asm.load(4, R2, R1, 0), asm.load(4, R3, R1, 4), asm.mov_reg(R4, R2),
                                asm.alu64("add", R4, 8), asm.jump_if_reg("jgt", R4, R3, "out"),
                                asm.ld_imm64(R1, value), asm.store(8, R2, 0, R1))
    code = source.label("out").emit(asm.exit_()).assemble()
    prog = syscall.Prog(syscall.PROG_XDP, code, "xp_imm64")
    try:
        retval, data = prog.test_run(bytes(64))
    finally:
        prog.close()
    assert retval == 2 and data[:8] == struct.pack("<Q", value)


@needs_bpf
def test_the_verifier_log_comes_with_a_refusal():
    # Reads R2, which nothing set: the verifier says so, and the error carries its words.
    code = asm.Program().emit(asm.mov_reg(R0, R2), asm.exit_()).assemble()
    with pytest.raises(syscall.BpfError) as caught:
        syscall.Prog(syscall.PROG_XDP, code, "xp_bad")
    assert "R2 !read_ok" in caught.value.log
    assert "refused" in str(caught.value)


@needs_bpf
def test_maps_update_lookup_delete_iterate():
    table = syscall.Map(syscall.MAP_HASH, 4, 8, 16, "xp_hash")
    try:
        for key in range(3):
            table.update(struct.pack("I", key), struct.pack("Q", key * 10))
        assert table.lookup(struct.pack("I", 2)) == struct.pack("Q", 20)
        assert sorted(struct.unpack("I", k)[0] for k in table.keys()) == [0, 1, 2]
        assert table.delete(struct.pack("I", 1)) and not table.delete(struct.pack("I", 1))
        assert table.lookup(struct.pack("I", 1)) is None
        with pytest.raises(ValueError):
            table.update(b"\0", bytes(8))
    finally:
        table.close()


@needs_bpf
def test_a_program_writes_a_map_python_reads_per_cpu():
    counters = syscall.Map(syscall.MAP_PERCPU_ARRAY, 4, 8, 1, "xp_pcpu")
    prog_code = asm.Program().emit(
        asm.store_imm(4, R10, -4, 0), asm.ld_map_fd(R1, counters.fd), asm.mov_reg(R2, R10), asm.alu64("add", R2, -4),
        asm.call(asm.MAP_LOOKUP_ELEM), asm.jump_if("jeq", R0, 0, "out"),
        asm.load(8, R1, R0, 0), asm.alu64("add", R1, 1), asm.store(8, R0, 0, R1),
    ).label("out").emit(asm.mov(R0, 2), asm.exit_()).assemble()
    prog = syscall.Prog(syscall.PROG_XDP, prog_code, "xp_count")
    try:
        for _run in range(3):
            assert prog.test_run(bytes(64))[0] == 2
        values = counters.lookup_percpu(struct.pack("I", 0))
        assert len(values) == syscall.possible_cpus()
        assert sum(struct.unpack("Q", v)[0] for v in values) == 3
    finally:
        prog.close()
        counters.close()
