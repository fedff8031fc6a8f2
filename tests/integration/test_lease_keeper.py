"""Leases always renewed: after a DHCP move on a host with no DHCP client of its own, the collection's
client (``vswitch.hostnet.lease_keeper``, run exactly as openvif-dhcp@.service runs it) keeps the lease
on the bridge alive past two lease lifetimes. dnsmasq hands out its shortest lease (120 s: it refuses
less), so renewal at T1 comes every ~60 s without any server-side timer override; its log is the proof.
The role writes the unit (its ExecStart and Environment are what the test runs: PID 1 here is not
systemd). The keeper is killed with -9 halfway (it resumes from its state file, no new DISCOVER) and stopped
with SIGTERM at the end (DHCPRELEASE). About 4.5 minutes; every wait is bounded.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from netlab import NetLab, sh
from test_bridge_role import GATEWAY, HOST_IP, HOST_MAC, PhysicalNetwork

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODULE_UTILS = Path(__file__).resolve().parents[2] / "plugins" / "module_utils"
LEASE = 120  # dnsmasq's minimum


@pytest.fixture
def net(ansible_env, tmp_path):
    lab = NetLab(prefix="v6" + uuid.uuid4().hex[:5])
    physical = None
    try:
        physical = PhysicalNetwork(lab, ansible_env, tmp_path)
        yield physical
    finally:
        if physical:
            physical.stop()
        lab.destroy()


def start_short_lease_dhcp(net: PhysicalNetwork) -> Path:
    pid_file, log = net.tmp / "dnsmasq.pid", net.tmp / "dnsmasq.log"
    sh("ip", "netns", "exec", net.phys, "dnsmasq", "--conf-file=/dev/null", "--port=0", "--interface=eth0",
       "--bind-interfaces", "--no-ping", "--dhcp-authoritative", f"--dhcp-range=10.77.0.100,10.77.0.150,{LEASE}",
       f"--dhcp-host={HOST_MAC},{HOST_IP}", f"--dhcp-option=3,{GATEWAY}", f"--dhcp-leasefile={net.tmp / 'leases'}",
       f"--pid-file={pid_file}", "--log-dhcp", f"--log-facility={log}")
    deadline = time.monotonic() + 10
    while not (pid_file.exists() and pid_file.read_text().strip()):
        assert time.monotonic() < deadline, "dnsmasq did not start"
        time.sleep(0.05)
    net.dnsmasq_pid = int(pid_file.read_text())
    return log


def unit_command(unit: Path, instance: str) -> tuple[list[str], dict[str, str]]:
    """ExecStart= (with %i) and Environment= of the unit file the role wrote and of the instance's drop-ins
    (openvif-dhcp@INSTANCE.service.d/*.conf, read after it: their settings win), as systemd would run them."""
    argv, env = [], {"PATH": os.environ["PATH"]}
    dropins = unit.parent / (unit.name.replace("@.", f"@{instance}.") + ".d")
    texts = [unit.read_text()] + [p.read_text() for p in sorted(dropins.glob("*.conf"))]
    for line in "\n".join(texts).splitlines():
        if line.startswith("ExecStart="):
            argv = line[len("ExecStart="):].replace("%i", instance).split()
        elif line.startswith("Environment="):
            key, _eq, value = line[len("Environment="):].partition("=")
            env[key] = value
    assert argv, f"no ExecStart in {unit}"
    return argv, env


def keeper(net: PhysicalNetwork, unit: Path, out) -> subprocess.Popen:
    argv, env = unit_command(unit, "xenbr0")
    proc = subprocess.Popen(["ip", "netns", "exec", net.host, *argv], env=env, stdout=out, stderr=subprocess.STDOUT)
    net.procs.append(proc)
    return proc


def addresses(net: PhysicalNetwork) -> list[dict]:
    return json.loads(sh("ip", "-n", net.host, "-j", "addr", "show", "xenbr0").stdout)[0]["addr_info"]


def valid_lft(net: PhysicalNetwork) -> int:
    (addr,) = [a for a in addresses(net) if a.get("local") == HOST_IP]
    return addr["valid_life_time"]


def acks(log: Path) -> int:
    return sum(1 for line in log.read_text().splitlines() if f"DHCPACK(eth0) {HOST_IP} {HOST_MAC}" in line)


def test_the_collections_client_renews_past_two_lifetimes_resumes_after_kill_and_releases(net):
    log = start_short_lease_dhcp(net)
    state_dir = net.tmp / "dhcp-state"
    rc, out, _stats = net.play(bridge_persist=False, bridge_dhcp_timeout=8, bridge_dhcp_python=sys.executable,
                               bridge_dhcp_install_dir=str(MODULE_UTILS), bridge_dhcp_state_dir=str(state_dir))
    assert rc == 0, out
    assert "DHCP lease on xenbr0 renewed by: openvif-dhcp" in out, out
    unit = net.root / "etc" / "systemd" / "system" / "openvif-dhcp@.service"
    assert "-m vswitch.hostnet.lease_keeper %i --state-dir" in unit.read_text()
    assert 0 < valid_lft(net) <= LEASE
    moved_at, acks_at_move = time.monotonic(), acks(log)
    keeper_log = open(net.tmp / "keeper.log", "ab")
    try:
        first = keeper(net, unit, keeper_log)
        # halfway through the second lifetime: kill -9, start again; it must resume from its file
        time.sleep(LEASE + 10)
        assert first.poll() is None, (net.tmp / "keeper.log").read_text()
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
        assert json.loads((state_dir / "xenbr0.lease").read_text())["address"] == HOST_IP
        second = keeper(net, unit, keeper_log)
        deadline = moved_at + 2 * LEASE + 15
        while time.monotonic() < deadline:
            assert second.poll() is None, (net.tmp / "keeper.log").read_text()
            assert valid_lft(net) > 0  # `ip` would not list it once expired
            time.sleep(5)
        lifetime_now = valid_lft(net)
        renewals = acks(log) - acks_at_move
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=15)
    finally:
        keeper_log.close()
    text = (net.tmp / "keeper.log").read_text()
    assert second.returncode == 0, text
    print(f"lease keeper: {renewals} renewals acknowledged in {2 * LEASE + 15} s with a {LEASE} s lease; "
          f"address valid for {lifetime_now} s more at the end")
    assert renewals >= 3 and text.count("renew: ") >= 3, log.read_text() + text
    assert time.monotonic() - moved_at > 2 * LEASE, "the address outlived two lease lifetimes"
    assert "resuming the lease" in text and text.count("obtained ") == 0, text
    assert f"DHCPRELEASE(eth0) {HOST_IP} {HOST_MAC}" in log.read_text()
    assert not (state_dir / "xenbr0.lease").exists()
    assert not [a for a in addresses(net) if a.get("local") == HOST_IP], "released, the address is given up"
