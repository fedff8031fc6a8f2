"""IPv6 moved with IPv4, in namespaces with real IPv6 peers: the 'physical network' namespace is the
IPv6 router too (static addressing, or dnsmasq sending router advertisements for SLAAC). A TCP session
over IPv6 stays up through the move; rollbacks (a wrong IPv6 gateway, no router advertising) restore
both families byte for byte, as `ip -j addr` and `ip -j -6 route` print them. Names start with 'v6';
dnsmasq and the helpers are stopped by PID; every wait is bounded.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from netlab import sh
from test_bridge_role import (
    ECHO_CLIENT,
    ECHO_SERVER,
    GATEWAY,
    HOST_IP,
    PhysicalNetwork,
    golden,
    persisted,
)

NETLAB_PREFIX = "v6"   # this area's namespaces (tests/conftest.py)
pytestmark = [pytest.mark.integration, pytest.mark.slow]

PREFIX = "2001:db8:77::"
GATEWAY6, HOST_IP6 = "2001:db8:77::1", "2001:db8:77::50"
SLAAC_IP6 = "2001:db8:77::ff:fe77:50"   # EUI-64 of HOST_MAC 02:00:00:77:00:50
EXTRA_NET6, EXTRA_GW6 = "2001:db8:99::/64", "2001:db8:77::2"
MODULE_UTILS = Path(__file__).resolve().parents[2] / "plugins" / "module_utils"
ECHO_SERVER6 = ECHO_SERVER.replace("socket.socket()", "socket.socket(socket.AF_INET6)").replace('"0.0.0.0"', '"::"')
# Lifetimes count down and router-made routes expire: the only fields two readings of an unchanged
# SLAAC host may differ in.
CLOCK_FIELDS = ("valid_life_time", "preferred_life_time", "expires")


class DualStackNetwork(PhysicalNetwork):
    """PhysicalNetwork plus IPv6: the router's address, and the host's, static or by SLAAC."""

    def __init__(self, lab, env, tmp: Path, slaac: bool) -> None:
        super().__init__(lab, env, tmp)
        self.lab.run(self.phys, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
        self.lab.run(self.phys, "ip", "addr", "add", f"{GATEWAY6}/64", "dev", "eth0", "nodad")
        self.lab.run(self.phys, "ip", "addr", "add", f"{EXTRA_GW6}/64", "dev", "eth0", "nodad")
        if slaac:
            self.start_ra()
            self.wait_for(lambda: SLAAC_IP6 in self.ipv6("eth0") and self.default6("eth0"), 15)
        else:
            self.lab.run(self.host, "sysctl", "-qw", "net.ipv6.conf.eth0.accept_ra=0")
            self.lab.run(self.host, "ip", "addr", "add", f"{HOST_IP6}/64", "dev", "eth0")
            self.lab.run(self.host, "ip", "-6", "route", "add", "default", "via", GATEWAY6)
            self.lab.run(self.host, "ip", "-6", "route", "add", EXTRA_NET6, "via", EXTRA_GW6)
        self.settle()

    def start_ra(self) -> None:
        pid_file = self.tmp / "dnsmasq-ra.pid"
        sh("ip", "netns", "exec", self.phys, "dnsmasq", "--conf-file=/dev/null", "--port=0", "--interface=eth0",
           "--bind-interfaces", "--enable-ra", f"--dhcp-range={PREFIX},ra-only,64,1h", "--ra-param=eth0,10,600",
           f"--pid-file={pid_file}", f"--log-facility={self.tmp / 'dnsmasq-ra.log'}")
        self.wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), 10)
        self.dnsmasq_pid = int(pid_file.read_text())

    @staticmethod
    def wait_for(predicate, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, "condition not met in time"
            time.sleep(0.1)

    def ipv6(self, dev: str) -> list[str]:
        out = sh("ip", "-n", self.host, "-j", "-6", "addr", "show", "dev", dev, "scope", "global").stdout
        return [a["local"] for link in json.loads(out) for a in link["addr_info"] if "local" in a]

    def default6(self, dev: str) -> list[dict]:
        return [r for r in json.loads(sh("ip", "-n", self.host, "-j", "-6", "route", "show", "default").stdout)
                if r.get("dev") == dev]

    def settle(self) -> None:
        """No address in duplicate detection: `ip` shows 'tentative' until it ends, about a second."""
        self.wait_for(lambda: '"tentative"' not in sh("ip", "-n", self.host, "-j", "addr").stdout, 15)

    def exact(self, clock: bool = False) -> tuple[str, str]:
        """`ip -j addr` and `ip -j -6 route` as printed (``clock``: lifetimes and expiries left out)."""
        self.settle()
        addr = sh("ip", "-n", self.host, "-j", "addr").stdout
        route = sh("ip", "-n", self.host, "-j", "-6", "route").stdout
        if clock:
            addr, route = (json.dumps(_without(json.loads(text), CLOCK_FIELDS)) for text in (addr, route))
        return addr, route


def _without(value, keys):
    if isinstance(value, list):
        return [_without(item, keys) for item in value]
    if isinstance(value, dict):
        return {k: _without(v, keys) for k, v in value.items() if k not in keys}
    return value


class TcpSession6:
    """A TCP echo session from the router to one of the host's IPv6 addresses, kept across the move."""

    def __init__(self, net: PhysicalNetwork, address: str) -> None:
        self.stop_file = net.tmp / f"stop-echo-{uuid.uuid4().hex[:6]}"
        self.server = net.spawn(net.host, sys.executable, "-c", ECHO_SERVER6)
        time.sleep(0.3)
        self.client = net.spawn(net.phys, sys.executable, "-c", ECHO_CLIENT, address, str(self.stop_file))

    def finish(self) -> dict:
        time.sleep(0.5)
        self.stop_file.write_text("stop")
        out, err = self.client.communicate(timeout=30)
        assert self.client.returncode == 0, err
        return json.loads(out)


def _network(netlab, ansible_env, tmp_path, slaac: bool):
    net = DualStackNetwork(netlab, ansible_env, tmp_path, slaac)
    return net


@pytest.fixture
def static6(netlab, ansible_env, tmp_path):
    net = None
    try:
        net = _network(netlab, ansible_env, tmp_path, slaac=False)
        yield net
    finally:
        if net:
            net.stop()


@pytest.fixture
def slaac6(netlab, ansible_env, tmp_path):
    net = None
    try:
        net = _network(netlab, ansible_env, tmp_path, slaac=True)
        yield net
    finally:
        if net:
            net.stop()


STATIC4 = {"bridge_bootproto": "static", "bridge_address": f"{HOST_IP}/24", "bridge_gateway": GATEWAY}


def _ping6(net, address: str) -> bool:
    return net.lab.run(net.phys, "ping", "-6", "-n", "-q", "-c", "1", "-W", "2", address, check=False).returncode == 0


def test_carried_static_ipv6_keeps_a_tcp_session_and_its_routes(static6):
    """Nothing IPv6 declared: the uplink's address, default route and other route move to the bridge."""
    net = static6
    session = TcpSession6(net, HOST_IP6)
    rc, out, stats = net.play(bridge_persist=False, bridge_verify_targets=[EXTRA_GW6], **STATIC4)
    echo = session.finish()
    assert rc == 0, out
    assert echo["error"] is None and echo["echoed"] == echo["sent"] > 10, echo
    assert net.ipv6("eth0") == [] and net.ipv6("xenbr0") == [HOST_IP6]
    routes = json.loads(sh("ip", "-n", net.host, "-j", "-6", "route", "show", "dev", "xenbr0").stdout)
    assert {(r["dst"], r.get("gateway")) for r in routes} >= {("default", GATEWAY6), (EXTRA_NET6, EXTRA_GW6)}
    assert "gateway 2001:db8:77::1 answers neighbour discovery" in net.journal()["result"]["verified"]
    assert _ping6(net, HOST_IP6)
    print(f"static IPv6 carried: TCP over IPv6 kept, {echo['echoed']} echoes, worst {echo['worst_rtt']} s")
    rc, out, stats = net.play(bridge_persist=False, bridge_verify_targets=[EXTRA_GW6], **STATIC4)
    assert rc == 0 and stats["changed"] == 0, out


def test_declared_ipv6_replaces_the_uplinks_and_persists_networkd(static6):
    net = static6
    session = TcpSession6(net, HOST_IP6)
    declared = {"bridge_address6": [f"{HOST_IP6}/64", "fd00:77::50/64"], "bridge_gateway6": GATEWAY6,
                "bridge_ipv6_autoconf": False, "bridge_persist_format": "networkd", **STATIC4}
    rc, out, _stats = net.play(**declared)
    echo = session.finish()
    assert rc == 0, out
    assert echo["error"] is None and echo["echoed"] == echo["sent"] > 10, echo
    assert sorted(net.ipv6("xenbr0")) == sorted([HOST_IP6, "fd00:77::50"]) and net.ipv6("eth0") == []
    assert [r["gateway"] for r in net.default6("xenbr0")] == [GATEWAY6]
    assert net.lab.run(net.host, "cat", "/proc/sys/net/ipv6/conf/xenbr0/accept_ra").stdout.strip() == "0"
    assert persisted(net.root, "etc/systemd/network") == golden("static6", "networkd")
    rc, out, stats = net.play(**declared)
    assert rc == 0 and stats["changed"] == 0, out


def test_slaac_host_keeps_its_address_and_relearns_the_router_on_the_bridge(slaac6):
    net = slaac6
    session = TcpSession6(net, SLAAC_IP6)
    rc, out, _stats = net.play(bridge_persist=False, **STATIC4)
    echo = session.finish()
    assert rc == 0, out
    assert echo["error"] is None and echo["echoed"] == echo["sent"] > 10, echo
    assert net.ipv6("eth0") == [] and net.ipv6("xenbr0") == [SLAAC_IP6]
    (default,) = net.default6("xenbr0")
    assert default["protocol"] == "ra" and default["gateway"].startswith("fe80::"), default
    assert not net.default6("eth0")
    assert any(line.startswith("router fe80::") for line in net.journal()["result"]["verified"])
    print(f"SLAAC moved: TCP over IPv6 kept, {echo['echoed']} echoes, worst {echo['worst_rtt']} s")


def test_wrong_ipv6_gateway_rolls_back_both_families_byte_for_byte(static6):
    net = static6
    before = net.exact()
    rc, out, _stats = net.play(bridge_persist=False, bridge_address6=f"{HOST_IP6}/64",
                               bridge_gateway6="2001:db8:77::99", **STATIC4)
    assert rc != 0 and "2001:db8:77::99" in out and "neighbour discovery" in out and "rolled back by itself" in out, out
    assert net.exact() == before
    assert net.journal()["phase"] == "rolled_back"
    assert _ping6(net, HOST_IP6) and net.reachable()


def test_autoconf_declared_where_no_router_advertises_rolls_back_byte_for_byte(static6):
    net = static6
    before = net.exact()
    rc, out, _stats = net.play(bridge_persist=False, bridge_ipv6_autoconf=True, **STATIC4)
    assert rc != 0 and "ipv6_autoconf" in out and "no router advertisement" in out, out
    assert "rolled back by itself" in out, out
    assert net.exact() == before


def test_router_gone_silent_rolls_back_a_slaac_host_and_its_routes_return_with_the_router(slaac6):
    """The router stops before the move: no advertisement on the bridge, so the move is undone. The
    host's SLAAC address is back at once; the routes the router made come back with its next
    advertisement (lifetimes aside, which count down)."""
    net = slaac6
    before = net.exact(clock=True)
    net.stop()  # dnsmasq gone: nobody answers the solicitation
    rc, out, _stats = net.play(bridge_persist=False, **STATIC4)
    assert rc != 0 and "no router advertisement" in out and "rolled back by itself" in out, out
    assert net.ipv6("eth0") == [SLAAC_IP6] and net.journal()["phase"] == "rolled_back"
    net.start_ra()
    net.wait_for(lambda: net.default6("eth0"), 15)
    assert net.exact(clock=True) == before


def test_bad_ipv6_input_and_disabled_ipv6_change_nothing(static6):
    net = static6
    before = net.exact()
    cases = [({"bridge_address6": HOST_IP6}, "no prefix length"),
             ({"bridge_address6": f"{HOST_IP6}/129"}, "at most 128"),
             ({"bridge_address6": f"{HOST_IP6}/64", "bridge_gateway6": "fe80::1"}, "names no interface")]
    for extra, words in cases:
        rc, out, _stats = net.play(bridge_persist=False, **STATIC4, **extra)
        assert rc != 0 and words in out, out
    net.lab.run(net.host, "sysctl", "-qw", "net.ipv6.conf.eth0.disable_ipv6=1")
    disabled = net.exact()
    rc, out, _stats = net.play(bridge_persist=False, bridge_address6=f"{HOST_IP6}/64", **STATIC4)
    assert rc != 0 and "disable_ipv6 is 1" in out and "address6" in out, out
    assert net.exact() == disabled
    net.lab.run(net.host, "sysctl", "-qw", "net.ipv6.conf.eth0.disable_ipv6=0")
    assert not (net.state_dir / "xenbr0" / "journal.json").exists()
    assert before[1] != ""  # the IPv4/IPv6 witness was read


@pytest.fixture
def userspace6(netlab, ansible_env, tmp_path):
    net = None
    log = open(tmp_path / "vswitchd.log", "ab")
    daemon = None
    try:
        net = _network(netlab, ansible_env, tmp_path, slaac=True)
        sock = tmp_path / "vswitchd.sock"
        daemon = subprocess.Popen(["ip", "netns", "exec", net.host, sys.executable, "-m", "vswitch.daemon",
                                   "--state-file", str(tmp_path / "vswitchd.json"), "--socket", str(sock)],
                                  env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": str(MODULE_UTILS)},
                                  stdout=log, stderr=log)
        net.wait_for(sock.exists, 10)
        net.vswitchd_socket = sock
        yield net
    finally:
        if net:
            net.stop()
        if daemon:
            daemon.terminate()
            try:
                daemon.wait(timeout=10)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait(timeout=10)
        log.close()


def test_userspace_datapath_carries_slaac_and_keeps_the_session(userspace6):
    net = userspace6
    session = TcpSession6(net, SLAAC_IP6)
    rc, out, _stats = net.play(bridge_persist=False, bridge_datapath="userspace",
                               bridge_vswitchd_socket=str(net.vswitchd_socket), **STATIC4)
    echo = session.finish()
    assert rc == 0, out
    assert echo["error"] is None and echo["echoed"] == echo["sent"] > 10, echo
    assert net.ipv6("xenbr0") == [SLAAC_IP6] and net.default6("xenbr0")
    print(f"userspace SLAAC move: TCP over IPv6 kept, {echo['echoed']} echoes, worst {echo['worst_rtt']} s")
