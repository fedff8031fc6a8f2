"""The GSO path's clsact attachment (kernels without tcx links), against this kernel's real tc, in a namespace.

What ``tc filter show`` / ``tc qdisc show`` (iproute2) report is the check: vswitchd's filter is
there at its own priority with its name and direct action, a start can find it by name, and
removing it leaves other filters alone and the clsact qdisc as it found it.
"""
from __future__ import annotations

import os
import socket
import subprocess

import pytest
from bpf_env import netns_with_veths, why_no_bpf
from vswitch.daemon.bpf import gsoprog, syscall, tc

REASON = why_no_bpf()
if REASON:
    pytest.skip(REASON, allow_module_level=True)


@pytest.fixture()
def tc_prog():
    with netns_with_veths(f"xp-tc-{os.getpid()}", 1) as idx:
        handoff = syscall.Map(syscall.MAP_PERCPU_ARRAY, 4, gsoprog.HANDOFF.size, 1, "xp_handoff")
        prog = syscall.Prog(syscall.PROG_SCHED_CLS, gsoprog.build_tc(handoff.fd), "xp_gso_tc")
        try:
            yield prog, idx[0], socket.if_indextoname(idx[0])
        finally:
            prog.close()
            handoff.close()


def show(*argv: str) -> str:
    return subprocess.run(["tc", *argv], check=True, capture_output=True, text=True).stdout


def test_attach_puts_a_named_direct_action_filter_at_its_priority_and_detach_removes_what_it_made(tc_prog):
    prog, ifindex, dev = tc_prog
    assert tc.names(ifindex) == []
    assert tc.attach(ifindex, prog.fd, "vsw_0123456789a") == (0, "", True)
    shown = show("filter", "show", "dev", dev, "ingress")
    assert f"pref {tc.PRIORITY} bpf" in shown and "vsw_0123456789a direct-action" in shown, shown
    assert "clsact" in show("qdisc", "show", "dev", dev)
    assert tc.names(ifindex) == ["vsw_0123456789a"]
    errno, text, created = tc.attach(ifindex, prog.fd, "vsw_0123456789a")
    assert errno == 17 and not created, (errno, text)
    assert tc.names(ifindex) == ["vsw_0123456789a"], "a refused second attach leaves the first"
    assert tc.detach(ifindex, delete_qdisc=True) == 0
    assert tc.names(ifindex) == []
    assert "clsact" not in show("qdisc", "show", "dev", dev)


def test_a_clsact_qdisc_and_filters_that_were_there_before_are_left(tc_prog):
    prog, ifindex, dev = tc_prog
    subprocess.run(["tc", "qdisc", "add", "dev", dev, "clsact"], check=True)
    # Another tool's filter (classic BPF: this kernel has cls_bpf, not matchall or u32's actions).
    subprocess.run(["tc", "filter", "add", "dev", dev, "ingress", "pref", "10", "protocol", "all", "bpf", "bytecode",
                    "1,6 0 0 0,"], check=True)
    errno, _text, created = tc.attach(ifindex, prog.fd, "vsw_0123456789a")
    assert errno == 0 and not created, "the qdisc was not vswitchd's"
    assert tc.detach(ifindex, delete_qdisc=created) == 0
    shown = show("filter", "show", "dev", dev, "ingress")
    assert "pref 10 bpf" in shown and "bytecode" in shown and f"pref {tc.PRIORITY}" not in shown, shown
    assert "clsact" in show("qdisc", "show", "dev", dev)
    assert tc.names(ifindex) == []
