"""The host's IP onto a vswitchd bridge (datapath: userspace): it lives on the bridge's internal
port, a TAP named like the bridge. Same physical network as test_bridge_role; vswitchd runs in
the host namespace with its own socket and state file, stopped by PID at the end.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from netlab import sh
from test_bridge_role import (
    HOST_IP,
    HOST_MAC,
    PhysicalNetwork,
    TcpSession,
    assert_rolled_back,
    golden,
    persisted,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODULE_UTILS = Path(__file__).resolve().parents[2] / "plugins" / "module_utils"


@pytest.fixture
def usernet(netlab, ansible_env, tmp_path):
    net = PhysicalNetwork(netlab, ansible_env, tmp_path)
    sock = tmp_path / "vswitchd.sock"
    log = open(tmp_path / "vswitchd.log", "ab")
    daemon = subprocess.Popen(["ip", "netns", "exec", net.host, sys.executable, "-m", "vswitch.daemon",
                               "--state-file", str(tmp_path / "vswitchd.json"), "--socket", str(sock)],
                              env={**os.environ, "PYTHONPATH": str(MODULE_UTILS)}, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            assert daemon.poll() is None and time.monotonic() < deadline, (tmp_path / "vswitchd.log").read_text()
            time.sleep(0.05)
        net.vswitchd_socket = sock
        net.vswitchd_state = tmp_path / "vswitchd.json"
        yield net
    finally:
        net.stop()
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=10)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(timeout=10)
        log.close()


def vswitchd_bridges(net) -> dict:
    sys.path.insert(0, str(MODULE_UTILS))
    from vswitch.rpc import Client

    with Client(str(net.vswitchd_socket), timeout=10) as client:
        return client.call("get_state")


def test_dhcp_move_onto_the_internal_port_keeps_tcp_and_is_idempotent(usernet):
    net = usernet
    net.start_dhcp()
    session = TcpSession(net)
    rc, out, stats = net.play(bridge_datapath="userspace", bridge_vswitchd_socket=str(net.vswitchd_socket),
                              bridge_persist_format="networkd")
    echo = session.finish()
    assert rc == 0, out
    assert echo["error"] is None and echo["echoed"] == echo["sent"] > 10, echo
    tap = json.loads(sh("ip", "-n", net.host, "-d", "-j", "addr", "show", "xenbr0").stdout)[0]
    assert tap["linkinfo"]["info_kind"] == "tun" and tap["address"] == HOST_MAC
    assert [f"{a['local']}/{a['prefixlen']}" for a in tap["addr_info"] if a["family"] == "inet"] == [f"{HOST_IP}/24"]
    assert net.addressing()["links"]["eth0"]["ipv4"] == []
    state = vswitchd_bridges(net)
    assert state["bridges"]["xenbr0"]["uplink"] == "eth0" and state["ports"]["eth0"]["uplink"] is True, state
    assert persisted(net.root, "etc/systemd/network") == golden("userspace_dhcp", "networkd")
    print(f"userspace DHCP move: TCP kept, {echo['echoed']} echoes, worst round trip {echo['worst_rtt']} s")

    rc, out, stats = net.play(bridge_datapath="userspace", bridge_vswitchd_socket=str(net.vswitchd_socket),
                              bridge_persist_format="networkd")
    assert rc == 0 and stats["changed"] == 0, out

    rc, out, _err = net.play(bridge_datapath="userspace", bridge_vswitchd_socket=str(net.vswitchd_socket),
                             bridge_persist_format="ifcfg")
    assert rc != 0 and "cannot describe" in out and "Move the host IP" not in out, out


def test_wrong_gateway_on_userspace_removes_the_vswitchd_bridge_again(usernet):
    net = usernet
    before = net.addressing()
    rc, out, _err = net.play(bridge_datapath="userspace", bridge_vswitchd_socket=str(net.vswitchd_socket),
                             bridge_bootproto="static", bridge_address=f"{HOST_IP}/24", bridge_gateway="10.77.0.99",
                             bridge_persist_format="networkd")
    assert rc != 0 and "rolled back by itself" in out, out
    assert_rolled_back(net, before)
    state = vswitchd_bridges(net)
    assert "xenbr0" not in state["bridges"] and "eth0" not in state.get("ports", {}), state
