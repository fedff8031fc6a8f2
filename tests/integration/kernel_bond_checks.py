"""Kernel bonds on a kernel that has the bonding driver (run inside tests/vmkernel/vm.py).

Not collected by a plain ``pytest tests`` run (the name does not match ``test_*.py``): this
machine's kernel has no bonding. tests/integration/test_kernel_vlan_filtering.py boots Debian's
kernel and runs this file there after the VLAN checks, in the same guest; by hand::

    python3 tests/vmkernel/vm.py -- .venv/bin/python -m pytest -p no:cacheprovider \
        tests/integration/kernel_bond_checks.py

The bonds are made by the collection's own planner and kernel backend, in a namespace standing
for the hypervisor (bkhv); a second namespace (bksw) is the physical side: a Linux bridge for
active-backup, a Linux 802.3ad bond, or vswitchd's own LACP bond (the userspace datapath, run here
from the same checkout) as the LACP partner. Checked with ip -d link, /proc/net/bonding and
vswitchd's lacp_show, and with pings across.
"""
from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.errors import MissingFeatureError
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.kernel import KernelBackend
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.model import BridgeSpec
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.plan import plan_bridge, plan_bridge_absent

sys.path.insert(0, str(Path(__file__).resolve().parent / "daemon"))
from vswitchd_lab import Daemon  # noqa: E402  (vswitchd as the tests start it, by its PID)

pytestmark = pytest.mark.integration
HV, SW = "bkhv", "bksw"
SYNCHRONIZATION, COLLECTING, DISTRIBUTING = 0x08, 0x10, 0x20   # LACP actor state bits (IEEE 802.1AX)
PAIRS = [("bkm1", "bkp1"), ("bkm2", "bkp2"), ("bkm3", "bkp3"), ("bkm4", "bkp4")]


def sh(*argv: str, check: bool = True) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    if check and done.returncode:
        raise AssertionError(f"{' '.join(argv)}: {done.returncode} {done.stderr}")
    return done.stdout


def ns(name: str, *argv: str, check: bool = True) -> str:
    return sh("ip", "netns", "exec", name, *argv, check=check)


@pytest.fixture
def lab() -> Iterator[KernelBackend]:
    for name in (HV, SW):
        sh("ip", "netns", "add", name)
    backend = None
    try:
        for member, peer in PAIRS:
            sh("ip", "link", "add", member, "netns", HV, "type", "veth", "peer", "name", peer, "netns", SW)
            ns(HV, "ip", "link", "set", member, "up")
            ns(SW, "ip", "link", "set", peer, "up")
        backend = KernelBackend(netns=HV)
        yield backend
    finally:
        if backend is not None:
            backend.close()
        for name in (HV, SW):   # deleting a namespace deletes its links, veth peers included
            sh("ip", "netns", "del", name, check=False)


def converge(backend: KernelBackend, params: dict[str, Any]) -> list[Any]:
    """Plan and apply ``params`` as vswitch_bridge would; returns the changes it made."""
    spec = BridgeSpec.from_params(params)
    changes = plan_bridge(spec, backend.read(), {"kernel": backend.features})
    backend.apply(changes)
    return changes


def details(name: str) -> str:
    return ns(HV, "ip", "-d", "link", "show", name)


def members_of(bond: str) -> list[str]:
    out = ns(HV, "ip", "-o", "link", "show", "master", bond)
    return sorted(re.findall(r"^\d+: ([^:@]+)", out, re.M))


def bonding(where: str, bond: str) -> str:
    return ns(where, "cat", f"/proc/net/bonding/{bond}")


def ping_loss(count: int, target: str, during: Any = None) -> tuple[int, int]:
    """(sent, received) of a ping every 10 ms from the hypervisor namespace; ``during`` runs 1 s in."""
    ping = subprocess.Popen(["ip", "netns", "exec", HV, "ping", "-q", "-c", str(count), "-i", "0.01", "-W", "1",
                             target], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        if during is not None:
            time.sleep(1)
            during()
        out, _err = ping.communicate(timeout=count * 0.01 + 60)
    finally:
        if ping.poll() is None:
            ping.kill()
            ping.wait()
    found = re.search(r"(\d+) packets transmitted, (\d+) (?:packets )?received", out)
    assert found, out
    return int(found.group(1)), int(found.group(2))


def aggregated(where: str, bond: str) -> bool:
    """Both members of kernel bond ``bond`` in the active aggregator, each in sync, collecting and distributing."""
    text = bonding(where, bond)
    active = re.search(r"Active Aggregator Info:.*?Number of ports: (\d+)", text, re.S)
    actor = [int(state) for state in re.findall(r"details actor lacp pdu:.*?port state: (\d+)", text, re.S)]
    in_use = SYNCHRONIZATION | COLLECTING | DISTRIBUTING
    return bool(active) and active.group(1) == "2" and "Partner Mac Address: 00:00:00:00:00:00" not in text \
        and len(actor) == 2 and all(state & in_use == in_use for state in actor)


def test_active_backup_bond_uplink_failover_and_removal(lab: KernelBackend) -> None:
    ns(SW, "ip", "link", "add", "bksw0", "type", "bridge")
    for peer in ("bkp1", "bkp2"):
        ns(SW, "ip", "link", "set", peer, "master", "bksw0")
    ns(SW, "ip", "addr", "add", "10.77.0.2/24", "dev", "bksw0")
    ns(SW, "ip", "link", "set", "bksw0", "up")
    params = {"name": "bkbr0", "uplink": {"bond": "bkbond0", "members": ["bkm1", "bkm2"], "mode": "active-backup",
                                          "primary": "bkm1", "miimon": 50, "updelay": 100, "downdelay": 50}}
    made = converge(lab, params)
    print("changes:", [(c.op, c.target) for c in made])
    link = details("bkbond0")
    print(link)
    assert "master bkbr0" in link
    assert "bond mode active-backup" in link
    assert re.search(r"miimon 50 updelay 100 downdelay 50", link), link
    assert "primary bkm1" in link
    assert members_of("bkbond0") == ["bkm1", "bkm2"]
    assert converge(lab, params) == []   # idempotent: what the kernel holds reads back as declared
    assert converge(lab, {"name": "bkbr0", "uplink": {"bond": "bkbond0", "members": ["bkm2", "bkm1"]}}) == []

    ns(HV, "ip", "addr", "add", "10.77.0.1/24", "dev", "bkbr0")
    ns(HV, "ip", "link", "set", "bkbr0", "up")
    deadline = time.monotonic() + 20   # members come up after updelay, on the emulated guest's timers
    while time.monotonic() < deadline and "Currently Active Slave: bkm1" not in bonding(HV, "bkbond0"):
        time.sleep(0.2)
    state = bonding(HV, "bkbond0")
    assert "Currently Active Slave: bkm1" in state, state
    sent, received = ping_loss(300, "10.77.0.2", during=lambda: ns(SW, "ip", "link", "set", "bkp1", "down"))
    state = bonding(HV, "bkbond0")
    print(f"active-backup failover (bkp1 down under a 10 ms ping): {sent - received} of {sent} lost")
    assert "Currently Active Slave: bkm2" in state, state
    assert received > sent / 2, (sent, received)
    shown = {row["bond"]: row for row in lab.bonds()}["bkbond0"]   # what vswitch_info reports
    print("bonds():", shown)
    assert shown["active_member"] == "bkm2" and shown["lacp_status"] == "off"
    assert [(m["name"], m["link"]) for m in shown["members"]] == [("bkm1", "down"), ("bkm2", "up")]

    changed = converge(lab, {**params, "uplink": {**params["uplink"], "miimon": 100, "updelay": 200,
                                                  "downdelay": 100}})
    assert [c.op for c in changed] == ["set_port"], changed
    link = details("bkbond0")
    assert re.search(r"miimon 100 updelay 200 downdelay 100", link), link
    assert members_of("bkbond0") == ["bkm1", "bkm2"] and "master bkbr0" in link
    sent, received = ping_loss(50, "10.77.0.2")
    print(f"after the settings change: {received} of {sent} answered")
    assert received > 0

    with pytest.raises(MissingFeatureError, match="no balance-slb"):
        converge(lab, {"name": "bkbr9", "uplink": {"bond": "bkbond9", "members": ["bkm3", "bkm4"],
                                                   "mode": "balance-slb"}})
    assert "bkbr9" not in lab.read().links

    lab.apply(plan_bridge_absent("bkbr0", lab.read()))
    links = lab.read().links
    assert "bkbond0" not in links and "bkbr0" not in links
    for member in ("bkm1", "bkm2"):
        assert links[member].master is None and links[member].up, links[member]


def test_balance_tcp_bond_negotiates_lacp_with_a_linux_802_3ad_partner(lab: KernelBackend) -> None:
    ns(SW, "ip", "link", "add", "bkpeer0", "type", "bond", "mode", "802.3ad", "lacp_rate", "fast",
       "miimon", "100", "xmit_hash_policy", "layer3+4")
    for peer in ("bkp3", "bkp4"):
        ns(SW, "ip", "link", "set", peer, "down")
        ns(SW, "ip", "link", "set", peer, "master", "bkpeer0")
    ns(SW, "ip", "addr", "add", "10.78.0.2/24", "dev", "bkpeer0")
    ns(SW, "ip", "link", "set", "bkpeer0", "up")
    params = {"name": "bkbr1", "uplink": {"bond": "bkbond1", "members": ["bkm3", "bkm4"], "mode": "balance-tcp",
                                          "lacp": "active", "lacp_rate": "fast"}}
    converge(lab, params)
    link = details("bkbond1")
    print(link)
    assert "bond mode 802.3ad" in link and "xmit_hash_policy layer3+4" in link and "lacp_rate fast" in link
    assert members_of("bkbond1") == ["bkm3", "bkm4"]
    assert converge(lab, params) == []
    ns(HV, "ip", "addr", "add", "10.78.0.1/24", "dev", "bkbr1")
    ns(HV, "ip", "link", "set", "bkbr1", "up")

    deadline = time.monotonic() + 60   # fast LACPDUs every second; the guest is emulated (TCG)
    while time.monotonic() < deadline and not (aggregated(HV, "bkbond1") and aggregated(SW, "bkpeer0")):
        time.sleep(1)
    ours, theirs = bonding(HV, "bkbond1"), bonding(SW, "bkpeer0")
    print(ours)
    print(theirs)
    assert aggregated(HV, "bkbond1"), ours
    assert aggregated(SW, "bkpeer0"), theirs
    ids = {re.search(r"Active Aggregator Info:\s*\n\s*Aggregator ID: (\d+)", t).group(1) for t in (ours,)}
    for member in ("bkm3", "bkm4"):   # both members in the active aggregator
        block = ours.split(f"Slave Interface: {member}")[1].split("Slave Interface:")[0]
        assert re.search(r"Aggregator ID: (\d+)", block).group(1) in ids, block
    shown = {row["bond"]: row for row in lab.bonds()}["bkbond1"]
    print("bonds():", shown)
    assert shown["lacp_status"] == "negotiated" and shown["aggregator"]["ports"] == 2
    assert [m["active"] for m in shown["members"]] == [True, True], shown
    sent, received = ping_loss(100, "10.78.0.2")
    print(f"over the LACP bond: {received} of {sent} answered")
    assert received > sent / 2
    lab.apply(plan_bridge_absent("bkbr1", lab.read()))
    links = lab.read().links
    assert "bkbond1" not in links and links["bkm3"].master is None and links["bkm3"].up


def test_passive_kernel_bond_negotiates_lacp_with_vswitchds_active_bond(lab: KernelBackend, tmp_path: Path) -> None:
    """The two datapaths as each other's LACP partner: the kernel's 802.3ad bond, made by the backend as a
    passive one (lacp_active off: it only answers), against vswitchd's own active 802.1AX state machines on
    the far side."""
    daemon = Daemon(SW, tmp_path).start(timeout=120)   # the guest is emulated: Python starts slowly
    try:
        assert daemon.ctl("add-br", "bksw1").returncode == 0
        added = daemon.ctl("add-bond", "bksw1", "bkpeer1", "bkp3", "bkp4", "bond_mode=balance-tcp", "lacp=active",
                           "other_config:lacp-time=fast")
        assert added.returncode == 0, added.stderr
        ns(SW, "ip", "addr", "add", "10.79.0.2/24", "dev", "bksw1")   # vswitchd's internal port
        ns(SW, "ip", "link", "set", "bksw1", "up")
        params = {"name": "bkbr2", "uplink": {"bond": "bkbond2", "members": ["bkm3", "bkm4"],
                                              "mode": "balance-tcp", "lacp": "passive", "lacp_rate": "fast"}}
        converge(lab, params)
        link = details("bkbond2")
        assert "lacp_active off" in link and "bond mode 802.3ad" in link, link
        assert lab.read().ports["bkbond2"].bond["lacp"] == "passive"
        assert converge(lab, params) == []   # read back as declared: a second run changes nothing
        ns(HV, "ip", "addr", "add", "10.79.0.1/24", "dev", "bkbr2")
        ns(HV, "ip", "link", "set", "bkbr2", "up")

        def vswitchd_distributes() -> bool:
            shown = daemon.call("lacp_show", {"bond": "bkpeer1"})[0]
            return shown["negotiated"] and len(shown["members"]) == 2 and all(
                m["attached"] and "distributing" in m["actor"]["state"] and "distributing" in m["partner"]["state"]
                for m in shown["members"])
        deadline = time.monotonic() + 90   # fast LACPDUs every second, on the emulated guest's timers
        while time.monotonic() < deadline and not (aggregated(HV, "bkbond2") and vswitchd_distributes()):
            time.sleep(1)
        ours, theirs = bonding(HV, "bkbond2"), daemon.ctl("lacp-show", "bkpeer1").stdout
        print(ours)
        print(theirs)
        assert aggregated(HV, "bkbond2"), ours
        assert "LACP active: off" in ours, ours
        assert vswitchd_distributes(), theirs
        assert "status: active negotiated" in theirs and theirs.count("current attached") == 2, theirs
        shown = {row["bond"]: row for row in lab.bonds()}["bkbond2"]
        assert shown["lacp_status"] == "negotiated" and shown["aggregator"]["ports"] == 2, shown
        sent, received = ping_loss(100, "10.79.0.2")
        print(f"kernel bond -> vswitchd bond: {received} of {sent} answered")
        assert received > sent / 2
        counters = {m["name"]: m for m in daemon.call("bond_show", {"bond": "bkpeer1"})[0]["members"]}
        assert all(m["rx_packets"] > 0 for m in counters.values()), counters   # LACPDUs on each, the ping on one
        lab.apply(plan_bridge_absent("bkbr2", lab.read()))
        assert "bkbond2" not in lab.read().links
    finally:
        daemon.stop()
