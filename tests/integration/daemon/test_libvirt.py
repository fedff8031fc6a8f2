"""libvirt for real: libvirtd and QEMU (TCG) plug a domain's tap into a vswitchd bridge through ovs-vsctl.

libvirtd runs on this machine itself (no Molecule container: PID 1 here is not systemd), inside a network
namespace of the test's own so its taps stay there, and in a private mount namespace where its
directories (/run/libvirt, /var/lib/libvirt, /etc/libvirt, ...) are the test's scratch directories and
/usr/bin/ovs-vsctl is the role's ovs-vsctl wrapper rendered for this checkout (this machine has Open
vSwitch's own there, for the differential test). It is started and stopped by PID, with an idle
timeout (-t) as a second guard; virtlogd too. The domain: type qemu, 64 MiB, no disk (it finds nothing
to boot and still has its tap), ``<interface type='bridge'>`` on vswitchd's ppbr1 with ``<virtualport
type='openvswitch'/>`` and ``<vlan><tag id='5'/></vlan>``, and a VM port profile for its UUID that
locks the port to its MAC.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_hotplug import render
from vswitch.declared import Declaration, DeclarationStore
from vswitch.profiles import Profile
from vswitchd_lab import ENV

NETLAB_PREFIX = "pp"   # this area's namespaces (tests/conftest.py)
pytestmark = [pytest.mark.integration]

DOMAIN_UUID = "5a1e0c0d-0000-4000-8000-00000000a001"
MAC = "52:54:00:aa:bb:01"
DOMAIN = f"""<domain type='qemu'>
  <name>pp-libvirt-web01</name>
  <uuid>{DOMAIN_UUID}</uuid>
  <memory unit='MiB'>64</memory>
  <os><type arch='x86_64'>hvm</type></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <interface type='bridge'>
      <mac address='{MAC}'/>
      <source bridge='ppbr1'/>
      <virtualport type='openvswitch'/>
      <vlan><tag id='5'/></vlan>
    </interface>
  </devices>
</domain>
"""
# qemu runs as root (no libvirt-qemu ownership games on scratch dirs), without cgroups or namespaces,
# which a host without systemd does not give it.
QEMU_CONF = 'user = "root"\ngroup = "root"\ndynamic_ownership = 0\nsecurity_driver = "none"\n' \
            "cgroup_controllers = [ ]\nnamespaces = [ ]\n"
LIBVIRTD_CONF = 'unix_sock_group = "root"\nunix_sock_rw_perms = "0700"\nauth_unix_rw = "none"\nauth_unix_ro = "none"\n'
DIRS = {"run": "/run/libvirt", "lib": "/var/lib/libvirt", "log": "/var/log/libvirt", "cache": "/var/cache/libvirt",
        "etc": "/etc/libvirt"}


def _stop(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    for _tick in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


class Libvirtd:
    def __init__(self, ns: str, tmp: Path, daemon, state_dir: Path) -> None:
        for tool in ("libvirtd", "virtlogd", "virsh", "qemu-system-x86_64"):
            if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists():
                pytest.fail(f"{tool} missing: scripts/bootstrap.sh test installs libvirt-daemon, "
                            "libvirt-daemon-driver-qemu, libvirt-clients and qemu-system-x86")
        if subprocess.run(["getent", "passwd", "libvirt-qemu"], capture_output=True, check=False).returncode:
            pytest.fail("user libvirt-qemu missing (libvirtd's qemu driver looks it up at start): "
                        "scripts/bootstrap.sh test creates it")
        self.root = tmp / "libvirt"
        for name in DIRS:
            (self.root / name).mkdir(parents=True)
        for conf in Path("/etc/libvirt").glob("*.conf"):
            shutil.copy(conf, self.root / "etc")
        (self.root / "etc" / "qemu.conf").write_text(QEMU_CONF)
        (self.root / "etc" / "libvirtd.conf").write_text(LIBVIRTD_CONF)
        wrapper = render("ovs-vsctl.j2", tmp / "ovs-vsctl", daemon.socket)
        mounts = "".join(f"mkdir -p {target}\nmount --bind {self.root / name} {target}\n"
                         for name, target in DIRS.items())
        script = (f"set -e\n{mounts}mount --bind {wrapper} /usr/bin/ovs-vsctl\n"
                  f"virtlogd -d -t 120 -p {self.root}/run/virtlogd.pid\n"
                  f"exec libvirtd -t 120 -p {self.root}/run/libvirtd.pid -f /etc/libvirt/libvirtd.conf\n")
        self.log = tmp / "libvirtd.log"
        self.socket = self.root / "run" / "libvirt-sock"
        with open(self.log, "ab") as log:
            # ip netns exec, unshare (no --fork) and sh all exec: the PID is libvirtd's.
            self.proc = subprocess.Popen(["ip", "netns", "exec", ns, "unshare", "--mount", "--propagation", "private",
                                          "sh", "-c", script], stdout=log, stderr=log,
                                         env={**ENV, "OPENVIF_STATE_DIR": str(state_dir)})
        deadline = time.monotonic() + 30
        while not self.socket.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"libvirtd did not start: {self.log.read_text()[-3000:]}")
            time.sleep(0.1)

    def virsh(self, *argv: str) -> subprocess.CompletedProcess:
        done = subprocess.run(["virsh", "-q", "-c", f"qemu:///system?socket={self.socket}", *argv],
                              capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, (argv, done.stdout, done.stderr, self.log.read_text()[-3000:])
        return done

    def stop(self) -> None:
        if self.proc.poll() is None:
            _stop(self.proc.pid)
            self.proc.wait(timeout=15)
        pidfile = self.root / "run" / "virtlogd.pid"
        if pidfile.exists():
            _stop(int(pidfile.read_text().strip()))


@pytest.fixture
def libvirtd(netlab, vswitchd, tmp_path):
    ns = netlab.ns("kvm")
    daemon = vswitchd(ns)
    state_dir = tmp_path / "openvif-state"
    profile = Profile.from_params({"vm": DOMAIN_UUID, "device": 0, "bridge": "ppbr1", "mac": "attached"})
    DeclarationStore(str(state_dir)).save(Declaration(profiles={profile.key: profile.to_entry()}))
    done = subprocess.run([sys.executable, "-m", "vswitch.vsctl", "add-br", "ppbr1"], capture_output=True, text=True,
                          env={**ENV, "VSWITCHD_SOCKET": str(daemon.socket)}, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    lv = Libvirtd(ns, tmp_path, daemon, state_dir)
    try:
        yield lv, daemon, ns
    finally:
        lv.stop()


def _links(ns: str) -> list[str]:
    out = subprocess.run(["ip", "-n", ns, "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    return sorted(line.split(":")[1].strip().split("@")[0] for line in out.splitlines())


def test_virsh_start_plugs_the_tap_with_its_vlan_and_ids_and_destroy_removes_it(libvirtd, tmp_path):
    lv, daemon, ns = libvirtd
    (tmp_path / "domain.xml").write_text(DOMAIN)
    lv.virsh("define", str(tmp_path / "domain.xml"))
    before = _links(ns)
    try:
        for cycle in range(3):
            lv.virsh("start", "pp-libvirt-web01")
            ports = daemon.call("get_state")["ports"]
            assert len(ports) == 1, (cycle, ports)
            (tap, port), = ports.items()
            assert tap.startswith("vnet") and port["bridge"] == "ppbr1" and port["vlan"] == 5, port
            ids = port["external_ids"]
            assert ids["attached-mac"] == MAC and ids["vm-id"] == DOMAIN_UUID and ids["iface-status"] == "active"
            assert ids["iface-id"] and ids["openvif-profile"] == f"{DOMAIN_UUID}/0"
            assert port["mac"] == MAC, "the profile's port security did not follow the domain"
            assert tap in _links(ns)
            lv.virsh("destroy", "pp-libvirt-web01")
            assert daemon.call("get_state")["ports"] == {}, cycle
            assert _links(ns) == before, "a tap was left behind"
    finally:
        lv.virsh("undefine", "pp-libvirt-web01")
    assert daemon.call("get_state")["bridges"]["ppbr1"]["ports"] == []
