"""The kernel datapath's VLANs, tested on a kernel that has bridge vlan_filtering.

This machine's kernel lacks it, so the checks in kernel_vlan_checks.py (with the other kernel_*_checks.py
files named in CHECKS) run inside a QEMU guest booting Debian 12's own kernel over this machine's
(read-only) root filesystem; see
tests/vmkernel/vm.py. The guest's pytest summary is printed here; any failure, error or skip
inside it fails this test.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "vmkernel"))
import vm  # noqa: E402

# One guest boot (minutes under TCG) runs them all: the VLAN checks, the bonding driver's checks, the
# bridge role moving the host IP onto a kernel bond, the boot restore's VLAN-filtering part, a declared
# bond rebuilt by vswitch.boot, the hotplug scripts on a VLAN-filtering bridge, and vswitchd's GSO tc path.
CHECKS = ("tests/integration/kernel_vlan_checks.py tests/integration/kernel_bond_checks.py "
          "tests/integration/kernel_bond_role_checks.py "
          "tests/integration/kernel_boot_checks.py tests/integration/kernel_bond_boot_checks.py "
          "tests/integration/kernel_hotplug_checks.py "
          # vswitchd's GSO path where the kernel has no tcx links (6.1): the clsact filter, its traffic and lifetime
          "tests/integration/daemon/test_fastpath.py::test_gso_tcp_between_xdp_ports_is_forwarded_whole_by_tc "
          "tests/integration/daemon/test_fastpath.py::"
          "test_programs_go_with_their_ports_and_daemon_and_a_restart_after_kill_replaces_them "
          # and its skb path for veths with clsact (its second test; test_skbpath.py runs on this machine only)
          "tests/integration/daemon/kernel_fastpath_checks.py")
# The guest is the suite's longest run: its slowest checks are printed to know what to trim.
GUEST_COMMAND = f"{Path(sys.executable)} -m pytest -p no:cacheprovider --color=no -q -rA --durations=8 {CHECKS}"
# The guest run starts ahead of this test (tests/conftest.py, marker `guest`) and overlaps the rest.
pytestmark = [pytest.mark.integration, pytest.mark.guest(GUEST_COMMAND)]


def test_kernel_vlan_filtering_in_a_debian_kernel_guest():
    result = vm.ahead(GUEST_COMMAND).wait()
    summary = [line for line in result.output.splitlines() if re.search(r"\d+ (passed|failed|error)", line)]
    figures = [line for line in result.output.splitlines()
               if re.match(r"(active-backup failover|after the settings change|over the LACP bond|kernel bond ->|"
                           r"bridge role, kernel bond uplink|\d+\.\d+s (call|setup|teardown) )", line)]
    print("\n".join(figures + summary[-1:]))
    assert result.returncode == 0, result.output[-20000:]
    assert summary and re.search(r"\d+ passed", summary[-1]), result.output[-20000:]
    assert not re.search(r"failed|error|skipped|xfail", summary[-1]), result.output[-20000:]
