"""DHCP through the move, in namespaces with a real DHCP server for both families: the 'physical network'
namespace runs dnsmasq as DHCPv4 and DHCPv6 server (120 s leases, its shortest) and router (advertisements
with the M flag: the prefix on-link without SLAAC, the default route). The host's uplink holds a DHCPv6 lease
that nothing renews (the installer's client has exited) and an IPv4 address the role takes as DHCP; the move
carries both to the bridge and asks the server again from there, the role reports that openvif-dhcp renews
each family, and the collection's client, run as the unit the role wrote and its drop-in run it (both
families in one process), keeps both leases past two lifetimes (a kill -9 halfway resumed both from their
state files, no new Discover), releasing both on SIGTERM. dnsmasq's log is the proof of every exchange.
A host whose own ISC dhclient -6 holds the uplink's lease (its DUID-LLT, as ifup runs it) keeps that address
and a TCP session on it through the move: the bridge asks with dhclient's DUID, and dhclient, run again for
the bridge, renews with it.
Where no DHCPv6 server answers, the move rolls back both families byte for byte. Names start with 'd6';
every wait is bounded.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.hostnet import dhclient6
from netlab import sh
from test_bridge_role import GATEWAY, HOST_IP, HOST_MAC, ORIGINAL_RESOLV, PhysicalNetwork
from test_bridge_role_ipv6 import STATIC4, DualStackNetwork, TcpSession6

NETLAB_PREFIX = "d6"   # this area's namespaces (tests/conftest.py)
pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODULE_UTILS = Path(__file__).resolve().parents[2] / "plugins" / "module_utils"
GATEWAY6 = "2001:db8:77::1"
DUID = "00:03:00:01:02:00:00:77:00:50"     # DUID-LL of HOST_MAC: the client's identity
LEASE = 120                                 # dnsmasq's shortest
# Take a lease on the uplink with the collection's DHCPv6 client and exit, as an installer's client would:
# the uplink then has a leased /128 that nothing renews.
TAKE_LEASE = """
import sys
from vswitch.hostnet import dhcp6, lease_keeper6, netops
lease = dhcp6.obtain("eth0", dhcp6.Identity.of_mac(sys.argv[1]), 20)
with netops.iproute() as ipr:
    lease_keeper6.install(ipr, netops.index_of(ipr, "eth0"), lease)
print(lease.address)
"""


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


class Dhcp6Network(PhysicalNetwork):
    """PhysicalNetwork (IPv4 on the host) plus a DHCPv6 server and router in phys; with ``dhcp4`` the same
    dnsmasq also leases the host's IPv4 address (120 s)."""

    def __init__(self, lab, env, tmp: Path, dhcp4: bool = False, dhclient: bool = False) -> None:
        super().__init__(lab, env, tmp)
        self.dhcp4 = dhcp4
        # dhclient-script writes /etc/resolv.conf: `ip netns exec` binds this file over it for whatever runs
        # in the host namespace (the test's dhclient, and the one the role starts for the bridge)
        self.etc_netns = Path("/etc/netns") / self.host
        if dhclient:
            self.etc_netns.mkdir(parents=True, exist_ok=True)
            (self.etc_netns / "resolv.conf").write_text(ORIGINAL_RESOLV)
        try:
            self._start(tmp, dhclient)
        except BaseException:
            self.stop()   # the fixture gets no object to stop: what was started goes now
            raise

    def _start(self, tmp: Path, dhclient: bool) -> None:
        self.lab.run(self.phys, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
        self.lab.run(self.phys, "ip", "addr", "add", f"{GATEWAY6}/64", "dev", "eth0", "nodad")
        self.log = tmp / "dnsmasq6.log"
        self.start_dhcp6()
        self.wait_for(lambda: self.default6("eth0"), 20)   # the advertisement arrived
        if dhclient:
            self.wait_for(lambda: '"tentative"' not in sh("ip", "-n", self.host, "-j", "addr").stdout, 15)
            # as Debian's ifup runs it for `iface eth0 inet6 dhcp`, but by name (ifup says /sbin/dhclient), as
            # by hand: the role must find it to run it for the bridge. It forks to the background once bound.
            sh("ip", "netns", "exec", self.host, "dhclient", "-6", "-v", "-pf", str(tmp / "dhclient6.eth0.pid"),
               "-lf", str(tmp / "dhclient6.eth0.leases"), "-I", "-df", str(tmp / "dhclient.eth0.leases"), "eth0",
               timeout=60)
            self.uplink_lease = self.leased("eth0")[0]["local"]
        else:
            env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(MODULE_UTILS)}
            self.uplink_lease = subprocess.run(
                ["ip", "netns", "exec", self.host, sys.executable, "-c", TAKE_LEASE, "02:00:00:77:00:50"],
                env=env, capture_output=True, text=True, timeout=60, check=True).stdout.strip()
        self.wait_for(lambda: '"tentative"' not in sh("ip", "-n", self.host, "-j", "addr").stdout, 15)

    def real_dhclients(self) -> dict[int, list[str]]:
        """The dhclient processes whose pid files are this test's (the test's, and the role's for the bridge)."""
        found = {}
        for pid_file in self.tmp.glob("dhclient6.*.pid"):
            try:
                pid = int(pid_file.read_text().split()[0])
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]
            except (OSError, ValueError, IndexError):
                continue
            if argv and os.path.basename(argv[0]) == "dhclient" and str(pid_file) in argv:
                found[pid] = argv
        return found

    def stop(self) -> None:
        for pid in self.real_dhclients():
            os.kill(pid, signal.SIGKILL)
        if self.etc_netns.exists():
            shutil.rmtree(self.etc_netns)
            try:
                self.etc_netns.parent.rmdir()   # /etc/netns too, unless something else keeps files there
            except OSError:
                pass
        super().stop()

    def start_dhcp6(self, dhcp: bool = True) -> None:
        pid_file = self.tmp / "dnsmasq6.pid"
        pid_file.unlink(missing_ok=True)
        mode = f"2001:db8:77::100,2001:db8:77::1ff,64,{LEASE}" if dhcp else "2001:db8:77::,ra-only,64,1h"
        dhcp4 = [f"--dhcp-range=10.77.0.100,10.77.0.150,{LEASE}", f"--dhcp-host={HOST_MAC},{HOST_IP}",
                 f"--dhcp-option=3,{GATEWAY}", "--no-ping", "--dhcp-authoritative"] if self.dhcp4 else []
        sh("ip", "netns", "exec", self.phys, "dnsmasq", "--conf-file=/dev/null", "--port=0", "--interface=eth0",
           "--bind-interfaces", "--enable-ra", f"--dhcp-range={mode}", *dhcp4, "--ra-param=eth0,10,600",
           f"--dhcp-leasefile={self.tmp / 'leases6'}", f"--pid-file={pid_file}", "--log-dhcp",
           f"--log-facility={self.log}")
        self.wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), 10)
        self.dnsmasq_pid = int(pid_file.read_text())

    def stop_dhcp6(self) -> None:
        os.kill(self.dnsmasq_pid, signal.SIGTERM)
        pid, self.dnsmasq_pid = self.dnsmasq_pid, None
        self.wait_for(lambda: not Path(f"/proc/{pid}").exists(), 10)

    wait_for = staticmethod(DualStackNetwork.wait_for)
    default6 = DualStackNetwork.default6
    ipv6 = DualStackNetwork.ipv6
    exact = DualStackNetwork.exact
    settle = DualStackNetwork.settle

    def leased(self, dev: str) -> list[dict]:
        """The link's DHCPv6 addresses (/128 with a lifetime), as `ip` shows them."""
        out = json.loads(sh("ip", "-n", self.host, "-j", "-6", "addr", "show", "dev", dev, "scope", "global").stdout)
        return [a for link in out for a in link["addr_info"]
                if a.get("prefixlen") == 128 and a.get("valid_life_time") != 4294967295]

    def replies(self, kind: str, duid: str = DUID) -> int:
        """How often dnsmasq answered a message of ``kind`` (SOLICIT, RENEW, ...) from the client ``duid``
        with a Reply granting the address: its log prints the message, then the Reply with the same serial."""
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        asked = {line.split()[4] for line in lines if f"DHCP{kind}(eth0) {duid}" in line}
        return sum(1 for line in lines if "DHCPREPLY(eth0)" in line and line.split()[4] in asked
                   and self.uplink_lease in line)

    def acks(self) -> int:
        """How often dnsmasq acknowledged the host's IPv4 lease (the move's request, then each renewal)."""
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        return sum(1 for line in lines if f"DHCPACK(eth0) {HOST_IP} {HOST_MAC}" in line)

    def leased4(self, dev: str) -> list[dict]:
        """The link's IPv4 addresses with a lifetime (a lease), as `ip` shows them."""
        out = json.loads(sh("ip", "-n", self.host, "-j", "-4", "addr", "show", "dev", dev).stdout)
        return [a for link in out for a in link["addr_info"] if a.get("valid_life_time") != 4294967295]


@pytest.fixture(params=[False], ids=["static4"])
def net6(request, netlab, ansible_env, tmp_path):
    net = None
    try:
        net = Dhcp6Network(netlab, ansible_env, tmp_path, dhcp4=request.param == "dhcp4",
                           dhclient=request.param == "dhclient")
        yield net
    finally:
        if net:
            net.stop()


def keeper_vars(net) -> dict:
    return {"bridge_persist": False, "bridge_dhcp_python": sys.executable, "bridge_dhcp_timeout": 8,
            "bridge_dhcp_install_dir": str(MODULE_UTILS), "bridge_dhcp_state_dir": str(net.tmp / "dhcp-state"),
            **({} if net.dhcp4 else STATIC4)}


def start_keeper(net, unit: Path, out) -> subprocess.Popen:
    argv, env = unit_command(unit, "xenbr0")
    proc = subprocess.Popen(["ip", "netns", "exec", net.host, *argv], env=env, stdout=out, stderr=subprocess.STDOUT)
    net.procs.append(proc)
    return proc


@pytest.mark.parametrize("net6", ["dhcp4"], ids=["dhcp4"], indirect=True)
def test_both_leases_move_with_a_tcp_session_and_openvif_dhcp_keeps_them_past_two_lifetimes(net6):
    net = net6
    address = net.uplink_lease
    assert [a["local"] for a in net.leased("eth0")] == [address]
    session = TcpSession6(net, address)
    rc, out, _stats = net.play(**keeper_vars(net))   # bridge_dhcp6 unset: as the uplink had it
    echo = session.finish()
    assert rc == 0, out
    assert echo["error"] is None and echo["echoed"] == echo["sent"] > 10, echo
    assert "DHCPv6 lease on xenbr0 renewed by: openvif-dhcp" in out, out
    assert "DHCP lease on xenbr0 renewed by: openvif-dhcp" in out, out
    assert net.ipv6("eth0") == [] and [a["local"] for a in net.leased("xenbr0")] == [address]
    assert [a["local"] for a in net.leased4("xenbr0")] == [HOST_IP]
    assert 0 < net.leased4("xenbr0")[0]["valid_life_time"] <= LEASE
    verified = net.journal()["result"]["verified"]
    assert any(line.startswith("DHCPv6 server fe80::") and address in line for line in verified), verified
    assert net.replies("SOLICIT") >= 2, net.log.read_text()   # the uplink's lease, then the bridge's
    (default,) = net.default6("xenbr0")
    assert default["protocol"] == "ra", default
    print(f"DHCP move: {HOST_IP} and {address} kept, TCP over IPv6 kept ({echo['echoed']} echoes, "
          f"worst {echo['worst_rtt']} s)")

    unit = net.root / "etc" / "systemd" / "system" / "openvif-dhcp@.service"
    assert "-m vswitch.hostnet.lease_keeper %i --state-dir" in unit.read_text()
    dropin = unit.parent / "openvif-dhcp@xenbr0.service.d" / "families.conf"
    assert "Environment=OPENVIF_DHCP_FAMILIES=4,6" in dropin.read_text()
    state4, state6 = net.tmp / "dhcp-state" / "xenbr0.lease", net.tmp / "dhcp-state" / "xenbr0.lease6"
    moved_at, renewed_at_move, acked_at_move = time.monotonic(), net.replies("RENEW"), net.acks()
    keeper_log = open(net.tmp / "keeper.log", "ab")
    try:
        first = start_keeper(net, unit, keeper_log)
        time.sleep(LEASE + 10)   # halfway through the second lifetime: kill -9; it must resume from its files
        assert first.poll() is None, (net.tmp / "keeper.log").read_text()
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
        assert json.loads(state6.read_text())["address"] == address
        assert json.loads(state4.read_text())["address"] == HOST_IP
        second = start_keeper(net, unit, keeper_log)
        deadline = moved_at + 2 * LEASE + 15
        while time.monotonic() < deadline:
            assert second.poll() is None, (net.tmp / "keeper.log").read_text()
            # `ip` drops an address once its lifetime is over
            assert [a["local"] for a in net.leased("xenbr0")] == [address]
            assert [a["local"] for a in net.leased4("xenbr0")] == [HOST_IP]
            time.sleep(5)
        lifetime6, lifetime4 = net.leased("xenbr0")[0]["valid_life_time"], net.leased4("xenbr0")[0]["valid_life_time"]
        renewals6, renewals4 = net.replies("RENEW") - renewed_at_move, net.acks() - acked_at_move
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=30)
    finally:
        keeper_log.close()
    text = (net.tmp / "keeper.log").read_text()
    assert second.returncode == 0, text
    print(f"openvif-dhcp, both families in one process, {2 * LEASE + 15} s with {LEASE} s leases: "
          f"{renewals4} DHCPv4 renewals acknowledged, {renewals6} DHCPv6 Renew/Reply exchanges; addresses valid "
          f"for {lifetime4} s and {lifetime6} s more at the end")
    renews = [line for line in text.splitlines() if "renew: " in line]
    assert renewals4 >= 3 and sum(HOST_IP in line for line in renews) >= 3, net.log.read_text() + text
    assert renewals6 >= 3 and sum(address in line for line in renews) >= 3, net.log.read_text() + text
    assert text.count("resuming the lease of") == 2, text      # each family from its own file
    assert text.count("obtained ") == 0, text                    # and never a new Discover or Solicit
    log = net.log.read_text()
    assert f"DHCPRELEASE(eth0) {DUID}" in log and f"DHCPRELEASE(eth0) {HOST_IP} {HOST_MAC}" in log, log
    assert not state6.exists() and net.leased("xenbr0") == [], "released, the IPv6 address is given up"
    assert not state4.exists() and net.leased4("xenbr0") == [], "released, the IPv4 address is given up"


def test_no_dhcp6_server_rolls_back_both_families(net6):
    """The router still advertises, but nothing answers DHCPv6 on the bridge: the move is undone and both
    families come back as they were; the uplink's lease is back with its lifetime (which counts down, so
    lifetimes and expiries are what the comparison leaves out)."""
    net = net6
    net.stop_dhcp6()
    net.start_dhcp6(dhcp=False)   # ra-only: the prefix for SLAAC now, no DHCPv6
    net.wait_for(lambda: len(net.ipv6("eth0")) == 2 and net.default6("eth0"), 20)
    before = net.exact(clock=True)
    rc, out, _stats = net.play(**keeper_vars(net))
    assert rc != 0 and "dhcp6" in out and "no DHCPv6 lease" in out and "rolled back by itself" in out, out
    assert net.journal()["phase"] == "rolled_back"
    assert net.exact(clock=True) == before
    assert [a["local"] for a in net.leased("eth0")] == [net.uplink_lease] and net.reachable()


def test_dhcp6_declared_where_no_server_answers_rolls_back_byte_for_byte(netlab, ansible_env, tmp_path):
    """A static dual-stack host (no advertisements, no DHCPv6 anywhere) asked for bridge_dhcp6: true:
    `ip -j addr` and `ip -j -6 route` print the same bytes after the rollback."""
    net = DualStackNetwork(netlab, ansible_env, tmp_path, slaac=False)
    try:
        before = net.exact()
        rc, out, _stats = net.play(bridge_persist=False, bridge_dhcp6=True, **STATIC4)
        assert rc != 0 and "no DHCPv6 lease" in out and "rolled back by itself" in out, out
        assert net.exact() == before
        assert net.journal()["phase"] == "rolled_back" and net.reachable()
    finally:
        net.stop()


@pytest.mark.parametrize("net6", ["dhclient"], ids=["dhclient"], indirect=True)
def test_the_hosts_dhclient_keeps_its_address_and_duid_through_the_move_and_renews_it_on_the_bridge(net6):
    """Without the uplink's DUID the move's Solicit would be another client to dnsmasq, which hands a DUID
    it has not seen another address: the carried one would go, and the session on it with it."""
    net = net6
    address = net.uplink_lease
    (uplink_client,) = net.real_dhclients().values()
    found = dhclient6.parse((net.tmp / "dhclient6.eth0.leases").read_text(encoding="latin-1"))
    assert found and found["duid"][:2] == b"\x00\x01", found      # dhclient made a DUID-LLT
    llt = ":".join(f"{b:02x}" for b in found["duid"])
    assert net.replies("REQUEST", llt) + net.replies("SOLICIT", llt) >= 1, net.log.read_text()
    session = TcpSession6(net, address)
    rc, out, _stats = net.play(**keeper_vars(net))
    echo = session.finish()
    assert rc == 0, out
    assert echo["error"] is None and echo["echoed"] == echo["sent"] > 10, echo
    assert "DHCPv6 lease on xenbr0 renewed by: dhclient" in out, out
    assert net.ipv6("eth0") == [] and [a["local"] for a in net.leased("xenbr0")] == [address]
    log = net.log.read_text()
    assert f"(eth0) {DUID}" not in log, log                          # the DUID-LL never asked
    assert not (net.root / "etc" / "systemd" / "system" / "openvif-dhcp@.service").exists()

    def rehomed() -> list[tuple[int, list[str]]]:   # its pid file is written once it is bound, in the background
        return [(pid, argv) for pid, argv in net.real_dhclients().items() if argv != uplink_client]

    net.wait_for(rehomed, 30)
    ((pid, argv),) = rehomed()
    assert argv[-1] == "xenbr0" and str(net.tmp / "dhclient6.xenbr0.leases") in argv, argv
    seeded = dhclient6.parse((net.tmp / "dhclient6.xenbr0.leases").read_text(encoding="latin-1"))
    assert seeded and seeded["duid"] == found["duid"], seeded
    assert not [p for p, a in net.real_dhclients().items() if a == uplink_client], "the uplink's one stopped"
    renewed = net.replies("RENEW", llt)
    net.wait_for(lambda: net.replies("RENEW", llt) > renewed, LEASE // 2 + 30)   # T1 is half the lease
    assert [a["local"] for a in net.leased("xenbr0")] == [address]
    print(f"dhclient's DUID {llt} carried: {address} kept with a TCP session ({echo['echoed']} echoes), "
          f"renewed on xenbr0 by dhclient (pid {pid})")
