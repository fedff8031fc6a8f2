"""A kernel bond uplink rebuilt at boot by ``python3 -m vswitch.boot`` (run inside tests/vmkernel/vm.py).

Not collected by a plain ``pytest tests`` run: this machine's kernel has no bonding.
tests/integration/test_kernel_vlan_filtering.py runs it in the Debian-kernel guest with the other
kernel checks; by hand::

    python3 tests/vmkernel/vm.py -- .venv/bin/python -m pytest -p no:cacheprovider \
        tests/integration/kernel_bond_boot_checks.py

The bond is declared as a module run declares it (actions.bridge with the declaration store, as
vswitch_bridge does) in a namespace standing for the hypervisor (bahv); then every link there is
deleted and the members re-created, as after a reboot, and vswitch.boot runs in that namespace as
the boot unit does. The bond must come back with its mode, options and members, as the bridge's
uplink, and carry a ping to the physical side (basw, a Linux bridge).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch import actions
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.declared import DeclarationStore
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.host import Host
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.kernel import KernelBackend

pytestmark = pytest.mark.integration
HV, SW = "bahv", "basw"
PAIRS = [("bam1", "bap1"), ("bam2", "bap2")]
MODULE_UTILS = Path(__file__).resolve().parents[2] / "plugins" / "module_utils"
BOND = {"bond": "babond0", "members": ["bam1", "bam2"], "mode": "active-backup", "primary": "bam2",
        "miimon": 100, "updelay": 200, "downdelay": 100}


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    if check and done.returncode:
        raise AssertionError(f"{' '.join(argv)}: {done.returncode} {done.stdout} {done.stderr}")
    return done


def ns(name: str, *argv: str, check: bool = True) -> str:
    return sh("ip", "netns", "exec", name, *argv, check=check).stdout


def members(where: str) -> None:
    """The veth pairs hypervisor <-> physical switch, as the NICs a reboot brings back."""
    for member, peer in PAIRS:
        sh("ip", "link", "add", member, "netns", HV, "type", "veth", "peer", "name", peer, "netns", where)
        ns(HV, "ip", "link", "set", member, "up")
        ns(where, "ip", "link", "set", peer, "master", "basw0")
        ns(where, "ip", "link", "set", peer, "up")


@pytest.fixture
def lab() -> Iterator[None]:
    for name in (HV, SW):
        sh("ip", "netns", "add", name)
    try:
        ns(SW, "ip", "link", "add", "basw0", "type", "bridge", "forward_delay", "0")
        ns(SW, "ip", "link", "set", "basw0", "up")
        ns(SW, "ip", "addr", "add", "10.91.0.1/24", "dev", "basw0")
        members(SW)
        yield
    finally:
        for name in (HV, SW):
            sh("ip", "netns", "del", name, check=False)


def boot(state_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(MODULE_UTILS)}
    return subprocess.run(["ip", "netns", "exec", HV, sys.executable, "-m", "vswitch.boot", "--state-dir",
                           str(state_dir)], capture_output=True, text=True, timeout=120, env=env, check=False)


def test_declared_kernel_bond_is_rebuilt_by_vswitch_boot(lab: None, tmp_path: Path) -> None:
    store = DeclarationStore(str(tmp_path))
    backend = KernelBackend(netns=HV)
    try:
        actions.bridge({"name": "baxenbr0", "uplink": dict(BOND)}, Host([backend], declarations=store), False)
    finally:
        backend.close()
    declared = store.load()[0].bridges["baxenbr0"]
    assert declared["uplink"] == BOND, declared

    # "Reboot": the bridge, the bond and the NICs are gone; the NICs come back, nothing else.
    ns(HV, "ip", "link", "del", "baxenbr0")
    ns(HV, "ip", "link", "del", "babond0")
    for member, _peer in PAIRS:
        ns(HV, "ip", "link", "del", member, check=False)
    assert "babond0" not in ns(HV, "ip", "-o", "link", "show")
    members(SW)

    done = boot(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    print(done.stdout.strip().splitlines()[-1])
    details = ns(HV, "ip", "-d", "link", "show", "babond0")
    assert "bond mode active-backup" in details and "miimon 100 updelay 200 downdelay 100" in details, details
    assert re.search(r"master baxenbr0 ", details), details
    enslaved = sorted(re.findall(r"^\d+: ([^:@]+)", ns(HV, "ip", "-o", "link", "show", "master", "babond0"), re.M))
    assert enslaved == ["bam1", "bam2"], enslaved
    status = ns(HV, "cat", "/proc/net/bonding/babond0")
    assert "Primary Slave: bam2" in status, status
    assert ns(HV, "ip", "-o", "link", "show", "master", "baxenbr0").count(": babond0") == 1

    ns(HV, "ip", "addr", "add", "10.91.0.2/24", "dev", "baxenbr0")
    ns(HV, "ip", "link", "set", "baxenbr0", "up")
    assert sh("ip", "netns", "exec", HV, "ping", "-c", "3", "-W", "2", "-i", "0.3", "10.91.0.1",
              check=False).returncode == 0, "no traffic over the rebuilt bond"

    again = boot(tmp_path)
    assert again.returncode == 0 and "already matches its declaration" in again.stdout, again.stdout + again.stderr
