"""ovs-vsctl's callers against vswitchd, for real.

- Differential: the same command lines against a private Open vSwitch database (Debian's
  ovsdb-server, started by hand on a socket in the test's tmp dir) and against vswitchd; stdout,
  stderr and exit status must match line by line, error cases included.
- Debian 12's own ``vif-openvswitch`` (from xen-utils-common, extracted by scripts/bootstrap.sh,
  never installed) plugs and unplugs VIFs exactly as xl calls it, with a stand-in xenstore (files on
  disk: xenstore cannot exist here); traffic then flows on the VLAN the bridge= string names and no
  other.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from vswitchd_lab import ENV, MODULE_UTILS, Capture, mac_of, send_raw, vlan_ids

pytestmark = [pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[3]
XEN_SCRIPTS = ROOT / ".cache" / "xen" / "etc" / "xen" / "scripts"
SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")


def vsctl(daemon, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vswitch.vsctl", *argv], env={**ENV, "VSWITCHD_SOCKET":
                          str(daemon.socket)}, capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def ovsdb(tmp_path):
    """A private ovsdb-server with Open vSwitch's schema (no ovs-vswitchd: --no-wait)."""
    for tool in ("ovsdb-tool", "ovsdb-server", "ovs-vsctl"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} missing: run scripts/bootstrap.sh test (Debian's openvswitch-switch)")
    db, sock = tmp_path / "conf.db", tmp_path / "ovsdb.sock"
    subprocess.run(["ovsdb-tool", "create", str(db), str(SCHEMA)], check=True)
    proc = subprocess.Popen(["ovsdb-server", str(db), f"--remote=punix:{sock}", f"--unixctl={tmp_path}/ovsdb.ctl",
                             "--no-chdir", f"--log-file={tmp_path}/ovsdb.log"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "ovsdb-server did not start"
            time.sleep(0.05)

        def run(*argv: str) -> subprocess.CompletedProcess:
            return subprocess.run(["ovs-vsctl", f"--db=unix:{sock}", "--no-wait", *argv], capture_output=True,
                                  text=True, timeout=30, check=False)
        assert run("init").returncode == 0
        yield run
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)


# What Xen's vif-openvswitch, libvirt and XAPI's vif scripts send, and what operators type.
LINES = [
    ["add-br", "xenbr0"],
    ["add-br", "xenbr0"],                                                # error: exists
    ["--may-exist", "add-br", "xenbr0"],
    ["add-br", "xapi1"],
    ["add-br", "xenbr0.7", "xenbr0", "7"],
    ["br-to-vlan", "xenbr0.7"], ["br-to-parent", "xenbr0.7"], ["br-to-vlan", "xenbr0"], ["br-to-parent", "xenbr0"],
    ["--timeout=30", "--", "--if-exists", "del-port", "vif1.0", "--", "add-port", "xenbr0", "vif1.0", "tag=5",
     "--", "set", "interface", "vif1.0", 'external-ids:"xen-vm-name"="web01"',
     "--", "set", "interface", "vif1.0", 'external-ids:"attached-mac"="00:16:3e:00:00:01"'],
    ["--timeout=5", "--", "--may-exist", "add-port", "xenbr0", "vif2.0", "trunk=10,20"],
    ["--may-exist", "add-port", "xenbr0", "vif2.0"],
    ["--may-exist", "add-port", "xapi1", "vif2.0"],                      # error: on another bridge
    ["add-port", "xenbr0", "vif2.0"],                                    # error: exists
    ["set", "Interface", "vif2.0", "external_ids:attached-mac=00:16:3e:00:00:02", "external_ids:iface-id=abc-1",
     "external_ids:vm-id=0a1b", "external_ids:iface-status=active"],
    ["add-port", "xapi1", "vif3.0", "--", "set", "port", "vif3.0", "vlan_mode=native-untagged", "tag=30",
     "trunks=31,32"],
    ["list-br"], ["list-ports", "xenbr0"], ["list-ifaces", "xenbr0"], ["list-ports", "xapi1"],
    ["list-ports", "nosuch"],
    ["iface-to-br", "vif1.0"], ["port-to-br", "vif2.0"], ["iface-to-br", "vif9.0"], ["port-to-br", "vif9.0"],
    ["br-exists", "xenbr0"], ["br-exists", "nosuch"],
    ["get", "Port", "vif1.0", "tag"], ["get", "Port", "vif2.0", "trunks"], ["get", "Port", "vif2.0", "tag"],
    ["get", "Port", "vif3.0", "vlan_mode", "tag", "trunks"],
    ["get", "Interface", "vif1.0", "external_ids"], ["get", "Interface", "vif2.0", "external-ids:iface-id"],
    ["get", "Interface", "vif1.0", "external_ids:attached-mac"], ["get", "Interface", "vif1.0", "name"],
    ["get", "Interface", "vif1.0", "external_ids:nokey"],                # error
    ["--if-exists", "get", "Interface", "vif1.0", "external_ids:nokey"],
    ["get", "Interface", "vif9.0", "name"],                              # error: no row
    ["get", "Port", "vif1.0", "nosuchcol"],                              # error: no column
    ["get", "Port", "vif1.0", "tag:x"],                                  # error: not a map
    ["set", "Port", "vif1.0", "tag=5000"],                               # error (worded differently: below)
    ["remove", "Interface", "vif2.0", "external_ids", "vm-id"],
    ["get", "Interface", "vif2.0", "external_ids"],
    ["clear", "Interface", "vif2.0", "external_ids"], ["get", "Interface", "vif2.0", "external_ids"],
    ["set", "Port", "vif1.0", "tag=[]"], ["get", "Port", "vif1.0", "tag"],
    ["--columns=name,external_ids", "list", "Interface", "vif1.0"],
    ["--bare", "--columns=name", "list", "Interface", "vif1.0"],
    ["del-port", "nosuch"], ["--if-exists", "del-port", "nosuch"], ["del-port", "xapi1", "vif1.0"],
    ["del-port", "xenbr0", "vif1.0"], ["list-ports", "xenbr0"],
    ["add-port", "xenbr0", "vif1.0", "--", "add-port", "xenbr0", "vif1.0"],  # error: the line applies whole...
    ["list-ports", "xenbr0"],                                                # ...or not at all
    ["frobnicate"],
    ["del-br", "xenbr0"], ["list-br"], ["--if-exists", "del-br", "xenbr0"], ["del-br", "xenbr0"],
]
# Where vswitchd answers differently on purpose (and says why), the line's stderr is not compared.
STDERR_DIFFERS = {
    ("set", "Port", "vif1.0", "tag=5000"): "vswitchd names its own range, 1-4094 (802.1Q); OVS's column takes 0-4095",
    ("frobnicate",): "ovs-vsctl's message lists its own help",
}


@pytest.mark.quick
def test_command_lines_answer_as_open_vswitch_does(netlab, vswitchd, ovsdb):
    ns = netlab.ns("sw")
    for name in ("vif1.0", "vif2.0", "vif3.0"):
        netlab.link(ns, name, netlab.ns("vm" + name[3]), "eth0")
    daemon = vswitchd(ns)
    mismatches = []
    for line in LINES:
        ours, theirs = vsctl(daemon, *line), ovsdb(*line)
        compare_stderr = tuple(line) not in STDERR_DIFFERS
        got = (ours.returncode, ours.stdout, ours.stderr if compare_stderr else "")
        want = (theirs.returncode, theirs.stdout, theirs.stderr if compare_stderr else "")
        if got != want:
            mismatches.append(f"{' '.join(line)}\n  vswitchd: {got}\n  ovs:      {want}")
    assert not mismatches, "\n".join(mismatches)


XENSTORE = r"""#!/usr/bin/env python3
# A stand-in for xenstore (which cannot exist without Xen): one file per key under $XENSTORE_DIR.
import os, sys
root = os.environ["XENSTORE_DIR"]
tool = os.path.basename(sys.argv[0])
def path(key): return os.path.join(root, key.strip("/"), "__value")
if tool == "xenstore-read":
    try:
        for key in sys.argv[1:]:
            print(open(path(key)).read())
    except OSError:
        sys.exit(1)
elif tool == "xenstore-write":
    args = sys.argv[1:]
    for key, value in zip(args[::2], args[1::2]):
        os.makedirs(os.path.dirname(path(key)), exist_ok=True)
        open(path(key), "w").write(value)
elif tool == "xenstore-exists":
    sys.exit(0 if os.path.exists(path(sys.argv[1])) else 1)
elif tool == "xenstore-rm":
    for key in sys.argv[1:]:
        if os.path.exists(path(key)):
            os.unlink(path(key))
"""


class XenHost:
    """dom0 as the hotplug scripts see it: xenstore (stand-in), /var/log/xen, and ovs-vsctl = vswitchd's."""

    def __init__(self, tmp: Path, daemon) -> None:
        if not (XEN_SCRIPTS / "vif-openvswitch").exists():
            pytest.fail(f"{XEN_SCRIPTS}/vif-openvswitch missing: run scripts/bootstrap.sh test (it extracts "
                        "Debian's xen-utils-common)")
        self.daemon, self.store, self.bin = daemon, tmp / "xenstore", tmp / "bin"
        self.bin.mkdir()
        tool = self.bin / "xenstore-read"
        tool.write_text(XENSTORE)
        tool.chmod(0o755)
        for name in ("xenstore-write", "xenstore-exists", "xenstore-rm"):
            (self.bin / name).symlink_to(tool)
        self.wrapper = tmp / "ovs-vsctl"
        self.wrapper.write_text(f"#!/bin/sh\nPYTHONPATH={MODULE_UTILS} VSWITCHD_SOCKET={daemon.socket} "
                                f"exec {sys.executable} -m vswitch.vsctl \"$@\"\n")
        self.wrapper.chmod(0o755)
        self.varlog = tmp / "var-log"
        self.log = self.varlog / "xen"
        self.log.mkdir(parents=True)

    def write(self, key: str, value: str) -> None:
        target = self.store / key.strip("/") / "__value"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(value)

    def read(self, key: str) -> str:
        target = self.store / key.strip("/") / "__value"
        return target.read_text() if target.exists() else ""

    def domain(self, domid: int, devid: int, name: str, mac: str, bridge: str) -> str:
        backend = f"/local/domain/0/backend/vif/{domid}/{devid}"
        self.write(f"{backend}/bridge", bridge)
        self.write(f"{backend}/frontend-id", str(domid))
        self.write(f"{backend}/mac", mac)
        self.write(f"/local/domain/{domid}/vm", f"/vm/{name}-uuid")
        self.write(f"/vm/{name}-uuid/name", name)
        self.write(f"/vm/{name}-uuid/uuid", f"{name}-uuid")
        return backend

    def hotplug(self, ns: str, command: str, vif: str, backend: str) -> subprocess.CompletedProcess:
        """Run Debian's vif-openvswitch as xl does, in the daemon's namespace.

        The script puts /usr/bin first on its PATH, where this machine has Open vSwitch's own
        ovs-vsctl (for the differential test): in a private mount namespace, vswitchd's ovs-vsctl is
        bound over it, and a scratch directory over /var/log (the script logs to /var/log/xen), so
        the host is not touched.
        """
        script = textwrap.dedent(f"""
            mount --bind {self.wrapper} /usr/bin/ovs-vsctl
            mount --bind {self.varlog} /var/log
            exec /bin/bash {XEN_SCRIPTS}/vif-openvswitch {command}
        """)
        env = {"PATH": f"{os.environ['PATH']}:{self.bin}", "XENSTORE_DIR": str(self.store), "vif": vif,
               "XENBUS_PATH": backend, "type_if": "vif"}
        return subprocess.run(["ip", "netns", "exec", ns, "unshare", "--mount", "--propagation", "private", "sh",
                               "-c", script], env=env, capture_output=True, text=True, timeout=60, check=False)


def test_debian_vif_openvswitch_plugs_vifs_on_their_vlan(netlab, vswitchd, tmp_path):
    if not Path("/usr/bin/ovs-vsctl").exists():
        pytest.fail("/usr/bin/ovs-vsctl missing (the mount point this test binds over): scripts/bootstrap.sh test")
    ns = netlab.ns("dom0")
    phys = netlab.ns("phys")
    netlab.link(ns, "peth0", phys, "eth0")
    vms = {}
    for domid, vif in ((1, "vif1.0"), (2, "vif2.0"), (3, "vif3.0")):
        vms[vif] = netlab.ns(f"dom{domid}")
        netlab.link(ns, vif, vms[vif], "eth0", up=False)   # the backend's VIF is down until the script runs
        netlab.run(vms[vif], "ip", "link", "set", "eth0", "up")
    daemon = vswitchd(ns)
    assert vsctl(daemon, "add-br", "xenbr0", "--", "add-port", "xenbr0", "peth0", "trunks=5,6,10,20").returncode == 0
    xen = XenHost(tmp_path, daemon)
    plugs = {"vif1.0": (1, "web01", "xenbr0.5"), "vif2.0": (2, "db01", "xenbr0.6"),
             "vif3.0": (3, "lb01", "xenbr0:10:20")}
    backends = {}
    for vif, (domid, name, bridge) in plugs.items():
        mac = mac_of(netlab, vms[vif], "eth0")
        backends[vif] = xen.domain(domid, 0, name, mac, bridge)
        for _attempt in range(2):   # udev may fire twice for one VIF: plugging is idempotent
            done = xen.hotplug(ns, "online", vif, backends[vif])
            assert done.returncode == 0, (done.stdout, done.stderr, (xen.log / "xen-hotplug.log").read_text())
        assert xen.read(f"{backends[vif]}/hotplug-status") == "connected"
        ids = vsctl(daemon, "get", "Interface", vif, "external_ids").stdout.strip()
        assert f'xen-vm-name={name}' in ids and f'attached-mac="{mac}"' in ids and f"xen-vm-uuid={name}-uuid" in ids
    assert vsctl(daemon, "get", "Port", "vif1.0", "tag").stdout.strip() == "5"
    assert vsctl(daemon, "get", "Port", "vif3.0", "trunks").stdout.strip() == "[10, 20]"
    assert "UP" in netlab.run(ns, "ip", "link", "show", "vif1.0").stdout   # the script brought it up

    # A broadcast from web01 leaves the uplink tagged 5, reaches no VM on another VLAN.
    web01 = mac_of(netlab, vms["vif1.0"], "eth0")
    frame = bytes.fromhex("ffffffffffff" + web01.replace(":", "") + "88b5") + b"openvif-vif-openvswitch".ljust(46)
    uplink, other = Capture(netlab, phys, "eth0"), Capture(netlab, vms["vif2.0"], "eth0")
    send_raw(netlab, vms["vif1.0"], "eth0", frame, count=3)
    assert vlan_ids(uplink.frames(), web01) == {5}
    assert vlan_ids(other.frames(), web01) == set()

    done = xen.hotplug(ns, "offline", "vif1.0", backends["vif1.0"])
    assert done.returncode == 0, done.stderr
    assert vsctl(daemon, "list-ports", "xenbr0").stdout.split() == ["peth0", "vif2.0", "vif3.0"]
    # A bridge nobody declared: the script fails as Xen's do (hotplug-status error), nothing attached.
    backend = xen.domain(1, 0, "web01", web01, "xenbr9.5")
    done = xen.hotplug(ns, "online", "vif1.0", backend)
    assert done.returncode != 0 and xen.read(f"{backend}/hotplug-status") == "error"
    assert "no bridge named xenbr9" in xen.read(f"{backend}/hotplug-error") or \
        "no bridge named xenbr9" in (xen.log / "xen-hotplug.log").read_text()
    assert vsctl(daemon, "port-to-br", "vif1.0").returncode == 1
