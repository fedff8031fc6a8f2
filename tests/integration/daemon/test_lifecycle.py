"""Restart, crash (kill -9 mid-transaction), the control socket's access rule, vswitchctl, the backend."""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from vswitch.daemon.config import Config, apply_changes
from vswitch.errors import NotFoundError
from vswitch.host import Host
from vswitch.model import BridgeSpec, Change, HostState, PortSpec
from vswitch.plan import plan_bridge, plan_ports
from vswitch.userspace import FEATURES, UserspaceBackend
from vswitchd_lab import ENV, ch, mac_of, star, switched_hosts

pytestmark = pytest.mark.integration


def links(lab, ns: str) -> set[str]:
    out = lab.run(ns, "ip", "-o", "link", "show").stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}


def saved(daemon) -> dict:
    data = json.loads(daemon.state_file.read_text())
    return {"bridges": data["bridges"], "ports": data["ports"]}


def test_restart_restores_every_bridge_and_port_and_traffic_flows(netlab, vswitchd):
    sw = netlab.ns("sw")
    h1, h2, h3 = star(netlab, sw, 3)
    d = vswitchd(sw)
    d.transact(ch("add_bridge", "xenbr0", ageing_time=120, mtu=1500), ch("add_bridge", "xapi1"),
               ch("add_port", "p1", bridge="xenbr0", vlan=10), ch("add_port", "p2", bridge="xenbr0", vlan=10),
               ch("add_port", "vif3.0", bridge="xenbr0", type="tap", trunks=[10, 20], native_vlan=10,
                  mac="00:16:3e:00:00:03", promiscuous=True),
               ch("add_port", "vif4.0", bridge="xapi1", type="tap"), ch("add_port", "p3", bridge="xenbr0"))
    assert netlab.ping_until(h1, "10.0.0.2")
    netlab.run(sw, "ip", "addr", "add", "10.0.0.254/24", "dev", "xenbr0")   # the host's IP on the bridge
    assert netlab.ping_until(sw, "10.0.0.3"), "the host reaches an untagged port through the internal port"
    before = d.call("get_state")
    bridge_mac = mac_of(netlab, sw, "xenbr0")
    assert d.stop() == 0, "SIGTERM is a clean shutdown"
    assert not d.socket.exists()
    assert {"xenbr0", "xapi1", "vif3.0", "vif4.0"} <= links(netlab, sw), "VIFs and the internal port outlive it"
    d.start()
    after = d.call("get_state")
    assert after["bridges"] == before["bridges"] and after["ports"] == before["ports"]
    assert all(p["status"] == "ok" for p in after["ports"].values())
    assert {"xenbr0", "xapi1", "vif3.0", "vif4.0"} <= links(netlab, sw)
    assert mac_of(netlab, sw, "xenbr0") == bridge_mac, "the bridge's MAC is stable across restarts"
    assert "10.0.0.254/24" in netlab.run(sw, "ip", "-o", "addr", "show", "dev", "xenbr0").stdout, \
        "the host's IP on the bridge survives a restart"
    assert netlab.ping_until(h1, "10.0.0.2")
    assert netlab.ping_until(sw, "10.0.0.3"), "the re-attached internal port forwards"
    # Deleting is what removes the devices.
    d.transact(ch("del_bridge", "xapi1"), ch("del_port", "vif3.0", bridge="xenbr0"))
    deadline = time.monotonic() + 10
    while {"xapi1", "vif3.0", "vif4.0"} & links(netlab, sw):
        assert time.monotonic() < deadline, "deleted ports' TAPs stayed"
        time.sleep(0.1)


def test_kill_9_mid_transaction_leaves_old_or_new_state_and_restart_restores(netlab, vswitchd):
    sw = netlab.ns("sw")
    d, (h1, _h2) = switched_hosts(netlab, vswitchd, sw)
    rng = random.Random(3)
    outcomes = {"old": 0, "new": 0}
    batch = [f"k{i}" for i in range(200)]
    for round_ in range(6):
        old = saved(d)
        if batch[0] in old["ports"]:
            changes = [ch("del_port", name, bridge="br0") for name in batch]
        else:
            changes = [ch("add_port", name, bridge="br0", type="tap", vlan=1 + i % 100) for i, name in
                       enumerate(batch)]
        new = apply_changes(Config.from_json(old), changes).to_json()
        client = subprocess.Popen([sys.executable, "-m", "vswitch.cli", "--socket", str(d.socket), "apply", "-"],
                                  env=ENV, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, text=True)
        client.stdin.write(json.dumps(changes))
        client.stdin.close()
        time.sleep(rng.uniform(0.05, 0.4))
        d.stop(signal.SIGKILL)
        client.wait(30)
        on_disk = saved(d)   # always parses: never torn
        assert on_disk in (old, new), f"round {round_}: state is neither the old nor the new configuration"
        outcomes["old" if on_disk == old else "new"] += 1
        d.start()
        state = d.call("get_state")
        assert set(state["bridges"]) == set(on_disk["bridges"])
        assert {k: {s: v for s, v in p.items() if s != "status"} for k, p in state["ports"].items()} \
            == on_disk["ports"]
        assert all(p["status"] == "ok" for p in state["ports"].values())
        present = links(netlab, sw)
        # Every configured TAP is there (that nothing else is, whatever step a crash interrupts, is
        # test_crash_consistency's part: the start removes the TAPs it made that the state does not hold).
        assert all(name in present for name in batch if name in on_disk["ports"])
        assert not [n for n in os.listdir(d.state_file.parent) if n.endswith(".tmp")], "stale temp files removed"
    print(f"kill -9 outcomes: {outcomes}")
    assert netlab.ping_until(h1, "10.0.0.2"), "traffic flows after the last restart"


def test_control_socket_is_root_only(netlab, vswitchd):
    workdir = Path(tempfile.mkdtemp(prefix="vswitchd-perm-"))
    try:
        _check_root_only(netlab, vswitchd, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _check_root_only(netlab, vswitchd, workdir: Path) -> None:
    os.chmod(workdir, 0o755)            # reachable by others, so only the daemon's own check stands
    d = vswitchd(netlab.ns("sw"), workdir=workdir)
    assert oct(d.socket.stat().st_mode & 0o777) == "0o600"
    os.chmod(d.socket, 0o666)           # even with the file opened up, peer credentials are checked
    probe = ("import socket,sys; s=socket.socket(socket.AF_UNIX); s.settimeout(10); s.connect(sys.argv[1]); "
             "print(s.recv(4096).decode())\n"
             "try:\n s.sendall(b'{\"id\":1,\"method\":\"get_state\"}\\n'); print(s.recv(4096).decode())\n"
             "except OSError as e: print('closed', e)")
    out = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", probe,
                          str(d.socket)], capture_output=True, text=True, timeout=30, check=False)
    assert "permission denied" in out.stdout, out
    assert '"result"' not in out.stdout
    assert d.call("ping")["pong"]


def test_vswitchctl_verbs(netlab, vswitchd):
    sw = netlab.ns("sw")
    star(netlab, sw, 1)
    d = vswitchd(sw)

    def ok(*argv: str) -> str:
        return d.ctl(*argv, check=True).stdout.strip()

    assert ok("add-br", "xenbr0") == ""
    r = d.ctl("add-br", "xenbr0")
    assert r.returncode == 1 and r.stderr.strip() == ("vswitchctl: cannot create a bridge named xenbr0 because a "
                                                      "bridge named xenbr0 already exists")
    assert d.ctl("--may-exist", "add-br", "xenbr0").returncode == 0
    assert d.ctl("add-br", "xenbr0", "--may-exist").returncode == 0
    ok("add-br", "xapi1", "--ageing", "0")
    assert ok("list-br").splitlines() == ["xapi1", "xenbr0"]
    assert d.ctl("br-exists", "nope").returncode == 2 and d.ctl("br-exists", "xenbr0").returncode == 0
    ok("add-port", "xenbr0", "p1")
    ok("add-port", "xenbr0", "vif1.0", "--type", "tap", "--tag", "10", "--mac", "00:16:3e:00:00:01")
    ok("add-ports", "xapi1", *[f"vif{i}.1" for i in range(2, 12)], "--type", "tap", "--trunks", "10-20,30")
    r = d.ctl("add-port", "xapi1", "vif1.0", "--may-exist")
    assert r.returncode == 1 and "already exists on bridge xenbr0" in r.stderr, "may-exist is per bridge"
    assert d.ctl("--may-exist", "add-port", "xenbr0", "vif1.0").returncode == 0
    r = d.ctl("add-port", "xenbr0", "eth9")
    assert r.returncode == 1 and "'eth9' does not exist" in r.stderr
    assert ok("list-ports", "xenbr0").splitlines() == ["p1", "vif1.0"]
    assert len(ok("list-ports", "xapi1").splitlines()) == 10
    assert ok("port-to-br", "vif1.0") == "xenbr0"
    assert ok("br-to-vlan", "xenbr0") == "0" and ok("br-to-parent", "xenbr0") == "xenbr0"
    assert d.ctl("list-ports", "nope").stderr.strip() == "vswitchctl: no bridge named nope"
    ok("set-port", "vif1.0", "tag=20", "promiscuous=true")
    state = json.loads(ok("show", "--json"))
    assert state["ports"]["vif1.0"]["vlan"] == 20 and state["ports"]["vif1.0"]["promiscuous"] is True
    shown = ok("show", "--stats")
    assert "Bridge xenbr0" in shown and "Port vif1.0" in shown and "tag: 20" in shown and "trunks: 10-20,30" in shown
    assert "rx:" in shown
    assert "xenbr0 p1: rx" in ok("port-stats", "xenbr0")
    assert json.loads(ok("port-stats", "xenbr0", "p1", "--json"))[0]["port"] == "p1"
    assert ok("fdb-show", "xenbr0").splitlines()[0].split() == ["port", "VLAN", "MAC", "Age"]
    assert "static" in ok("fdb-show", "xenbr0"), "a port's declared MAC is a static entry"
    ok("vlog-set", "ports:debug")
    assert "vswitchd.ports   debug" in ok("vlog-list")
    assert d.ctl("vlog-set", "loud").returncode == 1
    ok("vlog-set", "info")
    ok("del-port", "xenbr0", "p1")
    r = d.ctl("del-port", "p1")
    assert r.returncode == 1 and r.stderr.strip() == "vswitchctl: no port named p1"
    assert d.ctl("--if-exists", "del-port", "p1").returncode == 0
    r = d.ctl("apply", "-", stdin=json.dumps([ch("add_port", "vif99.0", bridge="xenbr0", type="tap"),
                                              ch("add_port", "vif98.0", bridge="nope", type="tap")]))
    assert r.returncode == 1 and "changes[1].args.bridge" in r.stderr
    assert "vif99.0" not in ok("list-ports", "xenbr0"), "a failed transaction applies nothing"
    assert "vif99.0" not in links(netlab, sw)
    ok("del-br", "xapi1")
    assert d.ctl("del-br", "xapi1").returncode == 1
    assert d.ctl("del-br", "xapi1", "--if-exists").returncode == 0
    assert ok("list-br") == "xenbr0"
    r = subprocess.run([sys.executable, "-m", "vswitch.cli", "--socket", str(d.socket) + ".none", "list-br"],
                       env=ENV, capture_output=True, text=True, timeout=30, check=False)
    assert r.returncode == 1 and "is vswitchd running" in r.stderr


def test_userspace_backend_drives_the_daemon_with_the_planner(netlab, vswitchd):
    sw = netlab.ns("sw")
    star(netlab, sw, 2)
    d = vswitchd(sw)
    backend = UserspaceBackend(d.client())
    host = Host([backend])

    def state() -> HostState:
        s = host.read()
        return HostState(bridges=s.bridges, ports=s.ports, links={n: None for n in links(netlab, sw)},
                         datapaths=("userspace",))
    bridge = BridgeSpec.from_params({"name": "xenbr0", "datapath": "userspace", "uplink": "p1", "ageing_time": 60})
    before = state()
    changes = plan_bridge(bridge, before)
    assert [c.op for c in changes] == ["add_bridge", "add_port"]
    host.apply(changes, before)
    specs = [PortSpec.from_params({"name": "p2", "bridge": "xenbr0", "vlan": 5}),
             *[PortSpec.from_params({"name": f"vif{i}.0", "bridge": "xenbr0", "type": "tap", "vlan": 5})
               for i in range(1, 21)]]
    current = state()
    changes = plan_ports(specs, current, {"userspace": FEATURES})
    host.apply(changes, current)
    after = state()
    assert after.bridges["xenbr0"].uplink == "p1" and after.bridges["xenbr0"].datapath == "userspace"
    assert after.ports["vif7.0"].vlan == 5 and after.ports["vif7.0"].type == "tap"
    assert plan_bridge(bridge, after) == [] and plan_ports(specs, after, {"userspace": FEATURES}) == []
    # All or nothing: a transaction whose last step fails creates none of its TAPs.
    with pytest.raises(NotFoundError):
        backend.apply([Change("add_port", "vif50.0", "userspace", {"bridge": "xenbr0", "type": "tap"}),
                       Change("add_port", "ghost0", "userspace", {"bridge": "xenbr0", "type": "system"})])
    assert "vif50.0" not in backend.read().ports and "vif50.0" not in links(netlab, sw)
    assert backend.fdb("xenbr0") is not None


def test_a_system_port_whose_device_goes_away_comes_back_with_it(netlab, vswitchd):
    """A Xen VIF (vif<domid>.<devid>) is destroyed when its VM stops and re-created when it boots."""
    sw = netlab.ns("sw")
    h1, h2 = star(netlab, sw, 2)
    d = vswitchd(sw)
    d.transact(ch("add_bridge", "br0"), ch("add_port", "p1", bridge="br0", vlan=7),
               ch("add_port", "p2", bridge="br0", vlan=7))
    assert netlab.ping_until(h1, "10.0.0.2")
    vm_mac = mac_of(netlab, h2, "eth0")
    netlab.run(sw, "ip", "link", "del", "p2")            # the VM went away
    deadline = time.monotonic() + 10
    while d.call("get_state")["ports"]["p2"]["status"] == "ok":
        assert time.monotonic() < deadline, "the port never noticed its device was gone"
        time.sleep(0.1)
    assert d.call("get_state")["ports"]["p2"]["vlan"] == 7, "the port stays configured"
    netlab.link(sw, "p2", h2, "eth0", up=False)          # ... and came back, with its MAC
    netlab.run(h2, "ip", "link", "set", "eth0", "address", vm_mac, "up")
    netlab.run(h2, "ip", "addr", "add", "10.0.0.2/24", "dev", "eth0")
    deadline = time.monotonic() + 15
    while d.call("get_state")["ports"]["p2"]["status"] != "ok":
        assert time.monotonic() < deadline, "the port was not re-attached"
        time.sleep(0.2)
    assert netlab.ping_until(h1, "10.0.0.2")


def test_a_thousand_ports_in_one_transaction_and_back_after_restart(netlab, vswitchd):
    sw = netlab.ns("sw")
    d = vswitchd(sw)
    names = [f"vif{i}.0" for i in range(1, 1001)]
    started = time.monotonic()
    assert d.ctl("add-br", "xenbr0").returncode == 0
    r = d.ctl("add-ports", "xenbr0", *names, "--type", "tap")
    assert r.returncode == 0, r.stderr
    assert set(d.call("get_state")["ports"]) == set(names)
    assert set(names) <= links(netlab, sw)
    assert d.stop() == 0
    d.start()
    assert len(d.call("get_state")["ports"]) == 1000
    assert set(names) <= links(netlab, sw)
    d.transact(ch("del_bridge", "xenbr0"))
    # Not a benchmark (bench/ measures); a bound that catches a start-up storm or quadratic work.
    assert time.monotonic() - started < 60
