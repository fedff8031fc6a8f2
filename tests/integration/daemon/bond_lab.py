"""Topology and peers for the bond tests: a "physical switch" namespace on the far side of two links.

    vm ──eth0/vif1.0── [sw: vswitchd br0, bond0 = eth1 + eth2] ══eth1/pe1, eth2/pe2══ [pp: the peer] ──pf/eth0── far

The peer is a Linux bridge (active-backup and balance-slb need no switch support) or a private
Open vSwitch (ovsdb-server + ovs-vswitchd started by hand with their own db and run directories,
netdev datapath) holding an LACP bond. Everything is named under the test's own prefix and
stopped by PID.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Optional

import pytest

VM_IP, FAR_IP = "10.77.0.1", "10.77.0.2"


def use_prefix(netlab) -> None:
    netlab.prefix = "bd" + uuid.uuid4().hex[:5]


def wire(netlab) -> dict[str, str]:
    use_prefix(netlab)
    sw, pp, vm, far = (netlab.ns(role) for role in ("sw", "pp", "vm", "far"))
    netlab.link(sw, "eth1", pp, "pe1")
    netlab.link(sw, "eth2", pp, "pe2")
    netlab.link(sw, "vif1.0", vm, "eth0")
    netlab.link(pp, "pf", far, "eth0")
    netlab.run(vm, "ip", "addr", "add", f"{VM_IP}/24", "dev", "eth0")
    netlab.run(far, "ip", "addr", "add", f"{FAR_IP}/24", "dev", "eth0")
    return {"sw": sw, "pp": pp, "vm": vm, "far": far}


def linux_bridge_peer(netlab, pp: str) -> None:
    netlab.run(pp, "ip", "link", "add", "pbr", "type", "bridge", "stp_state", "0", "forward_delay", "0")
    for port in ("pe1", "pe2", "pf"):
        netlab.run(pp, "ip", "link", "set", port, "master", "pbr")
    netlab.run(pp, "ip", "link", "set", "pbr", "up")


class OpenVswitch:
    """A private Open vSwitch in namespace ``ns``: its own db, run and log directory, stopped by PID."""

    def __init__(self, ns: str, workdir: Path) -> None:
        for tool in ("ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ovs-appctl"):
            if shutil.which(tool) is None:
                pytest.fail(f"{tool} is missing: apt-get install openvswitch-switch (scripts/bootstrap.sh test)")
        self.ns = ns
        self.dir = workdir / "ovs"
        self.dir.mkdir()
        self.env = dict(os.environ, OVS_RUNDIR=str(self.dir), OVS_LOGDIR=str(self.dir), OVS_DBDIR=str(self.dir))
        self.procs: list[subprocess.Popen] = []
        self.sock = self.dir / "db.sock"

    def start(self) -> OpenVswitch:
        d = self.dir
        subprocess.run(["ovsdb-tool", "create", str(d / "conf.db"), "/usr/share/openvswitch/vswitch.ovsschema"],
                       check=True, env=self.env)
        self._spawn(["ovsdb-server", str(d / "conf.db"), f"--remote=punix:{self.sock}", f"--unixctl={d}/ovsdb.ctl",
                     f"--log-file={d}/ovsdb.log"])
        deadline = time.monotonic() + 20
        while self.vsctl("--no-wait", "init", check=False).returncode:
            if time.monotonic() > deadline:
                raise AssertionError(f"ovsdb-server did not start: {(d / 'ovsdb.log').read_text()[-2000:]}")
            time.sleep(0.1)
        self._spawn(["ovs-vswitchd", f"unix:{self.sock}", f"--unixctl={d}/vsd.ctl", f"--log-file={d}/vsd.log"])
        return self

    def _spawn(self, argv: list[str]) -> None:
        with open(self.dir / "spawn.log", "ab") as log:
            self.procs.append(subprocess.Popen(["ip", "netns", "exec", self.ns, *argv], env=self.env, stdout=log,
                                               stderr=log))

    def vsctl(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["ovs-vsctl", f"--db=unix:{self.sock}", "--timeout=30", *argv], env=self.env,
                              capture_output=True, text=True, check=check, timeout=60)

    def appctl(self, *argv: str) -> str:
        return subprocess.run(["ovs-appctl", "-t", str(self.dir / "vsd.ctl"), *argv], env=self.env,
                              capture_output=True, text=True, check=True, timeout=30).stdout

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)


def wait_for(predicate, seconds: float = 20.0, step: float = 0.2) -> bool:
    """Poll ``predicate`` until it holds or ``seconds`` pass (negotiation takes a few LACPDUs)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())


class FastPing:
    """``ping -i 0.01`` from ``ns`` for ``count`` echoes; ``lost()`` once it ends."""

    def __init__(self, netlab, ns: str, target: str, count: int) -> None:
        self.proc = subprocess.Popen(["ip", "netns", "exec", ns, "ping", "-n", "-q", "-i", "0.01", "-W", "1", "-c",
                                      str(count), target], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def lost(self) -> int:
        out, _err = self.proc.communicate(timeout=120)
        found = re.search(r"(\d+) packets transmitted, (\d+) received", out)
        assert found, out
        return int(found.group(1)) - int(found.group(2))


class Tcpdump:
    """tcpdump on ``iface`` in ``ns`` for gratuitous RARP frames, bounded by ``seconds``."""

    def __init__(self, ns: str, iface: str, seconds: float) -> None:
        if shutil.which("tcpdump") is None:
            pytest.fail("tcpdump is missing: apt-get install tcpdump (scripts/bootstrap.sh test)")
        self.proc = subprocess.Popen(["ip", "netns", "exec", ns, "timeout", str(seconds), "tcpdump", "-i", iface,
                                      "-nn", "-e", "-l", "ether proto 0x8035"], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        time.sleep(1.0)   # tcpdump says "listening" on stderr once its filter is attached

    def sources(self) -> list[str]:
        out, _err = self.proc.communicate(timeout=60)
        return re.findall(r"^\S+ ([0-9a-f:]{17}) > ff:ff:ff:ff:ff:ff, ethertype Reverse ARP", out, re.M)


def mac_of(netlab, ns: str, iface: str) -> str:
    return netlab.run(ns, "cat", f"/sys/class/net/{iface}/address").stdout.strip()


def fdb_port_of(netlab, pp: str, mac: str) -> Optional[str]:
    """Which port of the peer's Linux bridge has learned ``mac``."""
    out = netlab.run(pp, "bridge", "fdb", "show", "br", "pbr").stdout
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[0] == mac and "dev" in parts:
            return parts[parts.index("dev") + 1]
    return None
