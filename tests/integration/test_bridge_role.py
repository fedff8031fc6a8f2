"""The bridge role in namespaces: a 'physical network' (dnsmasq as DHCP server, the gateway) and a
host whose IP is on eth0. The role moves it to xenbr0 by DHCP and by static addressing while a TCP
session from the physical network to the host's IP stays up; rollback cases (wrong gateway, no
lease, applier killed with -9, controller gone) each end with the previous addressing back and
reachable. Every wait is bounded; dnsmasq and the test's helpers are stopped by PID.
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
import yaml
from ansible_runner import run_module, run_playbook, write_inventory
from netlab import sh

pytestmark = [pytest.mark.integration, pytest.mark.slow]

GATEWAY, HOST_IP, HOST_MAC = "10.77.0.1", "10.77.0.50", "02:00:00:77:00:50"
GOLDEN = Path(__file__).resolve().parents[1] / "unit" / "golden" / "bridge"
ORIGINAL_RESOLV = "search corp.example\nnameserver 192.0.2.53\n"

ECHO_SERVER = r"""
import socket, sys
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", 7777)); srv.listen(1); srv.settimeout(60)
conn, _ = srv.accept(); conn.settimeout(120)
while True:
    data = conn.recv(4096)
    if not data:
        break
    conn.sendall(data)
"""

# Sends a numbered line every 50 ms and waits for its echo; stops when the stop file appears
# (or after 150 s). Reports how many were echoed and the longest round trip (the move's gap).
ECHO_CLIENT = r"""
import json, os, socket, sys, time
host, stop = sys.argv[1], sys.argv[2]
deadline = time.monotonic() + 10
while True:
    try:
        conn = socket.create_connection((host, 7777), timeout=2); break
    except OSError:
        if time.monotonic() > deadline: raise
        time.sleep(0.1)
conn.settimeout(20)
sent = echoed = 0; worst = 0.0; error = None; end = time.monotonic() + 150
try:
    while not os.path.exists(stop) and time.monotonic() < end:
        sent += 1; line = f"{sent}\n".encode(); t = time.monotonic()
        conn.sendall(line); got = b""
        while not got.endswith(b"\n"):
            chunk = conn.recv(64)
            if not chunk: raise ConnectionError("closed by the host")
            got += chunk
        if got != line: raise ValueError(f"echo {got!r} != {line!r}")
        echoed += 1; worst = max(worst, time.monotonic() - t); time.sleep(0.05)
except Exception as err:
    error = f"{type(err).__name__}: {err}"
print(json.dumps({"sent": sent, "echoed": echoed, "worst_rtt": round(worst, 3), "error": error}))
"""


# Stands in for the distribution's DHCP client on the uplink (dhclient started by ifup): the move
# must stop it, a rollback start it again, a committed DHCP move start it for the bridge. It is the
# Python interpreter under the name dhclient (a symlink), so /proc shows `dhclient ... eth0` as for
# the real one; it only sleeps (bounded).
FAKE_DHCLIENT_CODE = "import time; time.sleep(300)"


class PhysicalNetwork:
    """phys (gateway + DHCP server) <-> host (IP on eth0), plus the Ansible plumbing to reach host."""

    play_timeout = 180   # seconds for one role run (the emulated guest takes longer)

    def __init__(self, lab, env, tmp: Path) -> None:
        self.lab, self.env, self.tmp = lab, env, tmp
        self.phys, self.host = lab.ns("phys"), lab.ns("host")
        lab.link(self.phys, "eth0", self.host, "eth0", up=False)
        lab.run(self.host, "ip", "link", "set", "eth0", "address", HOST_MAC)
        for ns in (self.phys, self.host):
            lab.run(ns, "ip", "link", "set", "eth0", "up")
        lab.run(self.phys, "ip", "addr", "add", f"{GATEWAY}/24", "dev", "eth0")
        lab.run(self.host, "ip", "addr", "add", f"{HOST_IP}/24", "dev", "eth0")
        lab.run(self.host, "ip", "route", "add", "default", "via", GATEWAY)
        self.resolv = tmp / "resolv.conf"
        self.resolv.write_text(ORIGINAL_RESOLV)
        self.state_dir = tmp / "state"
        self.root = tmp / "root"
        self.inventory = write_inventory(tmp, {"host": self.host}, sys.executable)
        self.procs: list[subprocess.Popen] = []
        self.dnsmasq_pid: int | None = None

    # -- helpers that run things, each stopped by PID in stop() --
    def spawn(self, ns: str, *argv: str, **kwargs) -> subprocess.Popen:
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *argv], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, **kwargs)
        self.procs.append(proc)
        return proc

    def start_dhcp(self) -> None:
        pid_file = self.tmp / "dnsmasq.pid"
        log = self.tmp / "dnsmasq.log"
        sh("ip", "netns", "exec", self.phys, "dnsmasq", "--conf-file=/dev/null", "--port=0", "--interface=eth0",
           "--bind-interfaces", "--no-ping", "--dhcp-authoritative",
           "--dhcp-range=10.77.0.100,10.77.0.150,255.255.255.0,1h",
           f"--dhcp-host={HOST_MAC},{HOST_IP}", f"--dhcp-option=3,{GATEWAY}", f"--dhcp-option=6,{GATEWAY}",
           f"--dhcp-leasefile={self.tmp / 'leases'}", f"--pid-file={pid_file}", "--log-dhcp",
           f"--log-facility={log}")
        deadline = time.monotonic() + 10
        while not (pid_file.exists() and pid_file.read_text().strip()):
            assert time.monotonic() < deadline, "dnsmasq did not start"
            time.sleep(0.05)
        self.dnsmasq_pid = int(pid_file.read_text())

    def fake_dhcp_client(self, interface: str) -> subprocess.Popen:
        script = self.tmp / "sbin" / "dhclient"
        if not script.exists():
            script.parent.mkdir(exist_ok=True)
            script.symlink_to(os.path.realpath(sys.executable))
        return self.spawn(self.host, str(script), "-c", FAKE_DHCLIENT_CODE, "-4", "-pf",
                          str(self.tmp / f"dhclient.{interface}.pid"), interface)

    def dhcp_clients(self) -> dict[int, list[str]]:
        """Our fake clients, wherever they came from (the test, or the code under test), by PID."""
        script = str(self.tmp / "sbin" / "dhclient")
        found = {}
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]
            except OSError:
                continue
            if argv[:1] == [script]:
                found[int(pid)] = argv[3:]
        return found

    def stop(self) -> None:
        for pid in self.dhcp_clients():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.dnsmasq_pid:
            try:
                os.kill(self.dnsmasq_pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            self.dnsmasq_pid = None
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)

    # -- what the host has --
    def addressing(self) -> dict:
        """Links (IPv4 addresses, master, MAC), routes and resolv.conf: 'the previous addressing'."""
        links = json.loads(sh("ip", "-n", self.host, "-j", "addr", "show").stdout)
        aliases = {link["ifname"]: link.get("ifalias")  # `ip addr` leaves the alias out
                   for link in json.loads(sh("ip", "-n", self.host, "-j", "link", "show").stdout)}
        routes = json.loads(sh("ip", "-n", self.host, "-j", "-4", "route", "show").stdout)
        return {
            "links": {link["ifname"]: {"master": link.get("master"), "mac": link["address"],
                                       "up": "UP" in link["flags"], "promisc": "PROMISC" in link["flags"],
                                       "alias": aliases.get(link["ifname"]),
                                       "ipv4": sorted(f"{a['local']}/{a['prefixlen']}" for a in link["addr_info"]
                                                      if a["family"] == "inet")}
                      for link in links},
            "routes": sorted(json.dumps(route, sort_keys=True) for route in routes),
            "resolv": self.resolv.read_text(),
        }

    def reachable(self) -> bool:
        return self.lab.ping_until(self.phys, HOST_IP, attempts=5)

    def journal(self) -> dict:
        path = self.state_dir / "xenbr0" / "journal.json"
        return json.loads(path.read_text()) if path.exists() else {}

    # -- Ansible --
    def role_vars(self, **overrides) -> dict:
        values = {"bridge_name": "xenbr0", "bridge_uplink": "eth0", "bridge_resolv_conf": str(self.resolv),
                  "bridge_state_dir": str(self.state_dir), "bridge_persist_root": str(self.root),
                  "bridge_rollback_timeout": 30, "bridge_verify_timeout": 5, "bridge_dhcp_timeout": 8}
        values.update(overrides)
        return values

    def play(self, *extra: str, **overrides) -> tuple[int, str, dict]:
        playbook = self.tmp / "play.yml"
        playbook.write_text(yaml.safe_dump([{"name": "bridge", "hosts": "host", "gather_facts": False,
                                             "roles": [{"role": "openvif.vswitch.bridge"}]}]))
        varfile = self.tmp / "vars.json"
        varfile.write_text(json.dumps(self.role_vars(**overrides)))
        rc, out, stats = run_playbook(self.env, self.inventory, playbook, "-e", f"@{varfile}", *extra,
                                      timeout=self.play_timeout)
        return rc, out, stats.get("host", {})

    def module(self, **args) -> dict:
        base = {"bridge": "xenbr0", "uplink": "eth0", "resolv_conf": str(self.resolv),
                "state_dir": str(self.state_dir), "verify_timeout": 5, "dhcp_timeout": 8}
        return run_module(self.env, self.inventory, "host", "openvif.vswitch.vswitch_host_ip", {**base, **args})


class TcpSession:
    """A TCP echo session from the physical network to the host's IP, kept up across the move."""

    def __init__(self, net: PhysicalNetwork) -> None:
        self.stop_file = net.tmp / "stop-echo"
        self.server = net.spawn(net.host, sys.executable, "-c", ECHO_SERVER)
        time.sleep(0.3)
        self.client = net.spawn(net.phys, sys.executable, "-c", ECHO_CLIENT, HOST_IP, str(self.stop_file))

    def finish(self) -> dict:
        time.sleep(0.5)  # a few more round trips over the new path
        self.stop_file.write_text("stop")
        out, err = self.client.communicate(timeout=30)
        assert self.client.returncode == 0, err
        return json.loads(out)


@pytest.fixture
def net(netlab, ansible_env, tmp_path):
    physical = PhysicalNetwork(netlab, ansible_env, tmp_path)
    try:
        yield physical
    finally:
        physical.stop()


def golden(case: str, fmt: str) -> dict[str, str]:
    base = GOLDEN / case / fmt
    return {str(p.relative_to(base)): p.read_text() for p in sorted(base.rglob("*")) if p.is_file()}


def persisted(root: Path, directory: str) -> dict[str, str]:
    base = root / directory
    return {str(p.relative_to(base)): p.read_text() for p in sorted(base.rglob("*")) if p.is_file()}


def assert_ip_on_bridge(net: PhysicalNetwork, dhcp: bool) -> None:
    after = net.addressing()
    assert after["links"]["eth0"]["ipv4"] == [] and after["links"]["eth0"]["master"] == "xenbr0"
    # Marked as vswitch_bridge marks an uplink, so a later vswitch_bridge/vswitch_vlan run knows it.
    assert after["links"]["eth0"]["alias"] == "openvif:uplink" and after["links"]["eth0"]["promisc"]
    assert after["links"]["xenbr0"]["ipv4"] == [f"{HOST_IP}/24"]
    assert after["links"]["xenbr0"]["mac"] == HOST_MAC
    routes = [json.loads(r) for r in after["routes"]]
    assert {"dst": "default", "gateway": GATEWAY, "dev": "xenbr0"}.items() <= next(
        r for r in routes if r["dst"] == "default").items()
    lease = json.loads(sh("ip", "-n", net.host, "-j", "addr", "show", "xenbr0").stdout)[0]["addr_info"]
    lifetime = next(a for a in lease if a["family"] == "inet")["valid_life_time"]
    assert (lifetime < 3601) if dhcp else (lifetime == 4294967295)


def wait_for(predicate, timeout: float = 10):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_dhcp_move_keeps_the_tcp_session_persists_ifcfg_and_is_idempotent(net):
    net.start_dhcp()
    old_client = net.fake_dhcp_client("eth0")
    wait_for(lambda: len(net.dhcp_clients()) == 1)
    session = TcpSession(net)
    rc, out, stats = net.play(bridge_persist_format="ifcfg")
    echo = session.finish()
    assert rc == 0, out
    assert stats["changed"] >= 2 and stats["failed"] == 0
    assert echo["error"] is None and echo["echoed"] == echo["sent"] > 10, echo
    assert_ip_on_bridge(net, dhcp=True)
    assert net.resolv.read_text() == "search corp.example\nnameserver 10.77.0.1\n"
    assert net.journal()["phase"] == "committed"
    assert "DHCP lease on xenbr0 renewed by: dhclient" in out, out  # the one client, no openvif-dhcp unit
    assert not (net.root / "etc" / "systemd" / "system" / "openvif-dhcp@.service").exists()
    assert persisted(net.root, "etc/sysconfig/network-scripts") == golden("dhcp", "ifcfg")
    # the uplink's DHCP client was stopped; the same client now renews the bridge's lease
    old_client.wait(timeout=10)
    wait_for(lambda: list(net.dhcp_clients().values()) == [
        ["-4", "-pf", str(net.tmp / "dhclient.xenbr0.pid"), "xenbr0"]])
    print(f"DHCP move: TCP session kept, {echo['echoed']} echoes, worst round trip {echo['worst_rtt']} s")

    rc, out, stats = net.play(bridge_persist_format="ifcfg")
    assert rc == 0 and stats["changed"] == 0, out
    assert net.reachable()


def test_dhcp_move_for_a_network_manager_leaves_the_uplinks_client_stopped(net):
    """rehome_dhcp_clients: false (the role's choice where a running NetworkManager or networkd takes the
    bridge over): the uplink's dhclient is stopped for the move and stays stopped, so it does not renew
    beside the manager; the bridge keeps the lease the move obtained."""
    net.start_dhcp()
    old_client = net.fake_dhcp_client("eth0")
    wait_for(lambda: len(net.dhcp_clients()) == 1)
    result = net.module(bootproto="dhcp", rehome_dhcp_clients=False)
    assert result["changed"] and result["phase"] == "verified", result
    confirmed = net.module(step="confirm", token=result["token"], bootproto="dhcp", rehome_dhcp_clients=False)
    assert confirmed["phase"] == "committed", confirmed
    assert confirmed["dhcp_clients_started"] == [] and confirmed["dhcp_renewers"] == {"ipv4": None, "ipv6": None}
    old_client.wait(timeout=10)
    time.sleep(1)
    assert net.dhcp_clients() == {}, "no client of the host's own renews now"
    assert_ip_on_bridge(net, dhcp=True)


def test_static_move_check_mode_first_persists_networkd_and_is_idempotent(net):
    before = net.addressing()
    overrides = {"bridge_bootproto": "static", "bridge_address": HOST_IP, "bridge_netmask": "255.255.255.0",
                 "bridge_gateway": GATEWAY, "bridge_dns": [GATEWAY], "bridge_dns_search": ["lab.example"],
                 "bridge_persist_format": "networkd"}
    rc, out, stats = net.play("--check", **overrides)
    assert rc == 0 and stats["changed"] >= 1, out
    assert net.addressing() == before, "check mode changed the host"

    session = TcpSession(net)
    rc, out, stats = net.play(**overrides)
    echo = session.finish()
    assert rc == 0, out
    assert echo["error"] is None and echo["echoed"] == echo["sent"] > 10, echo
    assert_ip_on_bridge(net, dhcp=False)
    assert net.resolv.read_text() == "search lab.example\nnameserver 10.77.0.1\n"
    assert persisted(net.root, "etc/systemd/network") == golden("lab_static", "networkd")
    print(f"static move: TCP session kept, {echo['echoed']} echoes, worst round trip {echo['worst_rtt']} s")

    rc, out, stats = net.play(**overrides)
    assert rc == 0 and stats["changed"] == 0, out


DEBIAN_INTERFACES = """# interfaces(5) file used by ifup(8) and ifdown(8)
source /etc/network/interfaces.d/*

auto lo
iface lo inet loopback

allow-hotplug eth0
iface eth0 inet static
    address 10.77.0.50/24
    gateway 10.77.0.1

allow-hotplug eth1
iface eth1 inet dhcp
"""


def test_ifupdown_host_detected_uplink_stanza_retired_and_idempotent(net):
    """A Debian ifupdown host (detected): the bridge's stanza is written, eth0's own is retired, eth1 kept."""
    interfaces = net.root / "etc" / "network" / "interfaces"
    interfaces.parent.mkdir(parents=True)
    interfaces.write_text(DEBIAN_INTERFACES)
    (net.root / "sbin").mkdir()
    (net.root / "sbin" / "ifup").write_text("")
    overrides = {"bridge_bootproto": "static", "bridge_address": f"{HOST_IP}/24", "bridge_gateway": GATEWAY,
                 "bridge_dns": [GATEWAY], "bridge_dns_search": ["lab.example"]}
    rc, out, stats = net.play(**overrides)
    assert rc == 0, out
    assert_ip_on_bridge(net, dhcp=False)
    written = {name: text for name, text in persisted(net.root, "etc/network").items()
               if name.startswith("interfaces.d/")}
    assert written == golden("lab_static", "ifupdown")
    text = interfaces.read_text()
    assert "iface eth0" not in text.replace("# openvif", "") and "\n    address 10.77.0.50/24" not in text, text
    assert "# allow-hotplug eth0  (openvif.vswitch.bridge: brought up by xenbr0)" in text, text
    assert "allow-hotplug eth1\niface eth1 inet dhcp\n" in text and "source /etc/network/interfaces.d/*" in text
    rc, out, stats = net.play(**overrides)
    assert rc == 0 and stats["changed"] == 0, out
    assert interfaces.read_text() == text


def assert_rolled_back(net: PhysicalNetwork, before: dict) -> None:
    assert net.addressing() == before
    assert net.reachable(), "the host is not reachable at its previous address after the rollback"
    assert not (net.root / "etc").exists(), "a failed move must not persist anything"


def test_wrong_gateway_rolls_back(net):
    before = net.addressing()
    started = time.monotonic()
    rc, out, _err = net.play(bridge_bootproto="static", bridge_address=f"{HOST_IP}/24", bridge_gateway="10.77.0.99",
                             bridge_persist_format="ifcfg")
    assert rc != 0
    assert "10.77.0.99" in out and "rolled back by itself" in out and "eth0 has 10.77.0.50/24" in out, out
    assert_rolled_back(net, before)
    assert time.monotonic() - started < 60
    assert net.journal()["phase"] == "rolled_back"


def test_rollback_puts_an_existing_bridge_back_with_every_setting(net):
    """The move changes STP, forward delay, MTU and MAC of a bridge that was there; a rollback plans them
    back from the snapshot, and leaves the settings the move never touched (ageing) as they were."""
    sh("ip", "-n", net.host, "link", "add", "xenbr0", "mtu", "1450", "address", "02:00:00:77:00:99", "type",
       "bridge", "stp_state", "1", "forward_delay", "300", "ageing_time", "0")

    def bridge() -> dict:
        link = json.loads(sh("ip", "-n", net.host, "-d", "-j", "link", "show", "xenbr0").stdout)[0]
        data = link["linkinfo"]["info_data"]
        return {"mtu": link["mtu"], "mac": link["address"], "stp": data["stp_state"],
                "forward_delay": data["forward_delay"], "ageing_time": data["ageing_time"]}

    settings, before = bridge(), net.addressing()
    result = net.module(bootproto="static", address=f"{HOST_IP}/24", gateway="10.77.0.99", stp=False, mtu=1400)
    assert result.get("failed") and "rolled back by itself" in result["msg"], result
    assert bridge() == settings
    assert_rolled_back(net, before)


def test_no_dhcp_lease_rolls_back(net):
    old_client = net.fake_dhcp_client("eth0")
    wait_for(lambda: len(net.dhcp_clients()) == 1)
    (old_argv,) = net.dhcp_clients().values()
    before = net.addressing()  # no DHCP server on the physical network
    rc, out, _err = net.play(bridge_dhcp_timeout=3, bridge_persist_format="ifcfg")
    assert rc != 0
    assert "got no lease" in out and "rolled back by itself" in out, out
    assert_rolled_back(net, before)
    # the uplink's DHCP client was stopped for the move and runs again, with the same command line
    old_client.wait(timeout=10)
    wait_for(lambda: list(net.dhcp_clients().values()) == [old_argv])


def wait_journal(net: PhysicalNetwork, predicate, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            data = net.journal()
        except ValueError:  # caught between write and rename: read again
            data = {}
        if predicate(data):
            return data
        time.sleep(0.05)
    raise AssertionError(f"journal never reached the expected state: {net.journal()}")


def test_applier_killed_mid_change_rolls_back(net):
    """kill -9 of the process applying the change, while the uplink has lost its IP and the bridge has none."""
    before = net.addressing()
    args = {"bridge": "xenbr0", "uplink": "eth0", "bootproto": "static", "address": f"{HOST_IP}/24",
            "gateway": GATEWAY, "resolv_conf": str(net.resolv), "state_dir": str(net.state_dir),
            "test_hold": {"unaddressed": 30}}
    ansible = subprocess.Popen(["ansible", "-i", str(net.inventory), "host", "-m", "openvif.vswitch.vswitch_host_ip",
                                "-a", json.dumps(args)], env=net.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    net.procs.append(ansible)
    data = wait_journal(net, lambda d: d.get("held") == "unaddressed", 30)
    mid = net.addressing()
    assert mid["links"]["eth0"]["ipv4"] == [] and mid["links"]["xenbr0"]["ipv4"] == [], "not mid-change"
    killed_at = time.monotonic()
    os.kill(data["applier_pid"], signal.SIGKILL)
    out, _err = ansible.communicate(timeout=60)
    assert ansible.returncode != 0 and "applier died" in out and "rolled back by itself" in out, out
    assert time.monotonic() - killed_at < 15
    assert_rolled_back(net, before)


def test_supervisor_killed_the_applier_takes_over_and_rolls_back(net):
    """kill -9 of the guard's supervisor after verification: the applier notices and keeps the deadline."""
    before = net.addressing()
    result = net.module(bootproto="static", address=f"{HOST_IP}/24", gateway=GATEWAY, rollback_timeout=10)
    assert result["changed"] and result["pending"] and result["phase"] == "verified", result
    data = net.journal()
    os.kill(data["supervisor_pid"], signal.SIGKILL)
    data = wait_journal(net, lambda d: d.get("phase") in ("committed", "rolled_back", "restore_failed"), 30)
    assert data["phase"] == "rolled_back" and "no confirmation" in data["reason"], data
    assert data["supervisor_pid"] == data["applier_pid"], "the applier did not take over"
    assert_rolled_back(net, before)


def test_both_guard_processes_killed_the_next_run_restores_first(net):
    """kill -9 of supervisor and applier: nobody is left on the host; the next run restores before acting."""
    before = net.addressing()
    args = {"bootproto": "static", "address": f"{HOST_IP}/24", "gateway": GATEWAY, "rollback_timeout": 600}
    first = net.module(**args)
    assert first["pending"], first
    data = net.journal()
    for pid in (data["applier_pid"], data["supervisor_pid"]):
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not Path(f"/proc/{data['supervisor_pid']}").exists()
             and not Path(f"/proc/{data['applier_pid']}").exists())
    assert net.journal()["phase"] == "verified"  # stuck: the orphaned change would stay forever
    second = net.module(**{**args, "rollback_timeout": 10})
    assert second["recovered"] == {"token": first["token"], "phase": "rolled_back",
                                   "reason": "the previous transaction's guard was gone before it finished"}, second
    assert second["pending"] and second["token"] != first["token"]
    data = wait_journal(net, lambda d: d.get("phase") in ("committed", "rolled_back", "restore_failed"), 30)
    assert data["phase"] == "rolled_back", data
    assert_rolled_back(net, before)


def test_controller_killed_without_confirming_rolls_back(net):
    """kill -9 of Ansible itself (module and controller) mid-change: nobody confirms, the host restores."""
    before = net.addressing()
    net.start_dhcp()
    varfile = net.tmp / "vars.json"
    varfile.write_text(json.dumps(net.role_vars(bridge_rollback_timeout=10, bridge_persist_format="ifcfg")))
    playbook = net.tmp / "play.yml"
    playbook.write_text(yaml.safe_dump([{"name": "bridge", "hosts": "host", "gather_facts": False,
                                         "roles": [{"role": "openvif.vswitch.bridge"}]}]))
    ansible = subprocess.Popen(["ansible-playbook", "-i", str(net.inventory), str(playbook), "-e", f"@{varfile}"],
                               env=net.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    net.procs.append(ansible)
    try:
        wait_journal(net, lambda d: d.get("phase") in ("applying", "verified"), 60)
    except AssertionError:
        os.killpg(ansible.pid, signal.SIGKILL)
        raise AssertionError(ansible.communicate(timeout=10)[0]) from None
    os.killpg(ansible.pid, signal.SIGKILL)
    ansible.wait(timeout=10)
    data = wait_journal(net, lambda d: d.get("phase") in ("committed", "rolled_back", "restore_failed"), 60)
    assert data["phase"] == "rolled_back", data
    assert "no confirmation" in data["reason"] or "applier died" in data["reason"], data["reason"]
    assert_rolled_back(net, before)


def test_stp_mtu_and_own_mac_through_the_module(net):
    """STP on (the move waits 2 x forward delay for the port to forward), MTU on both links, MAC not pinned."""
    started = time.monotonic()
    result = net.module(bootproto="static", address=f"{HOST_IP}/24", gateway=GATEWAY, stp=True, forward_delay=2,
                        mtu=1400, move_mac=False)
    assert result["changed"] and result["phase"] == "verified", result
    assert time.monotonic() - started >= 4, "the port cannot forward before 2 x forward_delay with STP"
    confirmed = net.module(step="confirm", token=result["token"])
    assert confirmed["changed"] and confirmed["phase"] == "committed", confirmed
    bridge = json.loads(sh("ip", "-n", net.host, "-d", "-j", "link", "show", "xenbr0").stdout)[0]
    eth0 = json.loads(sh("ip", "-n", net.host, "-j", "link", "show", "eth0").stdout)[0]
    assert bridge["linkinfo"]["info_data"]["stp_state"] == 1 and bridge["linkinfo"]["info_data"]["forward_delay"] == 200
    assert bridge["mtu"] == eth0["mtu"] == 1400
    assert net.reachable()
    again = net.module(bootproto="static", address=f"{HOST_IP}/24", gateway=GATEWAY, stp=True, forward_delay=2,
                       mtu=1400, move_mac=False)
    assert again["changed"] is False and not again["pending"], again


def test_bad_input_fails_before_touching_the_host(net):
    before = net.addressing()
    result = net.module(bootproto="static", address="10.77.0.50", gateway="10.77.0.1")
    assert result.get("failed") and result["error"]["field"] == "address" and "prefix" in result["msg"], result
    result = net.module(bootproto="static", address="10.77.0.50/24", gateway="10.78.0.1")
    assert result.get("failed") and result["error"]["field"] == "gateway", result
    result = net.module(uplink="nosuch0")
    assert result.get("failed") and result["error"]["field"] == "uplink", result
    rc, out, _err = net.play(bridge_bootproto="bootp", bridge_persist_format="ifcfg")
    assert rc != 0 and "bridge_bootproto" in out and "bootp" in out, out  # meta/argument_specs.yml
    rc, out, _err = net.play(bridge_bootproto="static", bridge_address="10.77.0.0/24", bridge_persist_format="ifcfg")
    assert rc != 0 and "network address" in out, out
    assert net.addressing() == before
    assert not (net.root / "etc").exists() and not (net.state_dir / "xenbr0" / "journal.json").exists()
