"""The collection's hotplug scripts and VM port profiles, for real.

dom0 is a namespace with a vswitchd (userspace bridge xenbr1, uplink peth1 trunking VLANs) and a Linux
bridge xenbr0 (kernel datapath). VMs are namespaces whose eth0 is wired to a ``vif<domid>.<devid>``
in dom0, created when the "domain" starts and deleted when it is destroyed. The scripts are the role's
own templates rendered for this checkout, run as xl runs them: ``vif-openvif online|offline`` with
``vif`` and ``XENBUS_PATH`` in the environment and a stand-in xenstore (files on disk). The profiles
are in the host's declaration (``OPENVIF_STATE_DIR`` of the test's own).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jinja2
import pytest
from netlab import NetLab
from vswitch.declared import Declaration, DeclarationStore
from vswitch.profiles import Profile
from vswitchd_lab import ENV, MODULE_UTILS, Capture, send_raw, vlan_ids

NETLAB_PREFIX = "pp"   # this area's namespaces (tests/conftest.py)
pytestmark = [pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[3]
TEMPLATES = ROOT / "roles" / "vswitchd" / "templates"
WEB01_MAC = "00:16:3e:5a:00:01"   # as the vif_mac role would have assigned it, in web01's vif line
DB01_MAC = "00:16:3e:5a:00:02"

# xenstore-read/-write over files, one per key (xenstore cannot exist without Xen); sh, so it is quick.
XENSTORE_READ = """#!/bin/sh
for key in "$@"; do
  file="$XENSTORE_DIR/${key#/}/__value"
  [ -f "$file" ] || exit 1
  cat "$file"; echo
done
"""
XENSTORE_WRITE = """#!/bin/sh
while [ $# -ge 2 ]; do
  dir="$XENSTORE_DIR/${1#/}"; mkdir -p "$dir"; printf '%s' "$2" > "$dir/__value"; shift 2
done
"""


def render(template: str, dest: Path, socket: Path) -> Path:
    text = jinja2.Template((TEMPLATES / template).read_text(), keep_trailing_newline=True).render(
        ansible_managed="rendered by tests/integration/daemon/test_hotplug.py", vswitchd_socket=str(socket),
        vswitchd_install_dir=str(MODULE_UTILS), vswitchd_python=sys.executable)
    dest.write_text(text)
    dest.chmod(0o755)
    return dest


class XenHost:
    """What every dom0 stand-in shares: the xenstore stand-in's files, xl's domain records, and reads of
    what the scripts did. Subclasses set lab, ns, state_dir and store."""

    lab: NetLab
    ns: str
    state_dir: Path
    store: Path

    def xs(self, key: str) -> str:
        target = self.store / key.strip("/") / "__value"
        return target.read_text() if target.exists() else ""

    def xs_write(self, key: str, value: str) -> None:
        target = self.store / key.strip("/") / "__value"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(value)

    def write_domain(self, domid: int, name: str, mac: str, bridge: str) -> str:
        """xl's xenstore records of domain ``domid``'s first VIF and of the VM; returns its backend path."""
        backend = f"/local/domain/0/backend/vif/{domid}/0"
        for key, value in ((f"{backend}/bridge", bridge), (f"{backend}/frontend-id", str(domid)),
                           (f"{backend}/mac", mac), (f"/local/domain/{domid}/vm", f"/vm/{name}-uuid"),
                           (f"/vm/{name}-uuid/name", name), (f"/vm/{name}-uuid/uuid", f"{name}-uuid")):
            self.xs_write(key, value)
        return backend

    def master(self, ifname: str) -> str:
        out = self.lab.run(self.ns, "ip", "-o", "link", "show", ifname).stdout
        return out.split(" master ")[1].split()[0] if " master " in out else ""

    def kernel_ports(self, bridge: str) -> list[str]:
        out = self.lab.run(self.ns, "ip", "-o", "link", "show", "master", bridge).stdout
        return sorted(line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if line.strip())

    def realised(self) -> list[str]:
        where = self.state_dir / "vifs"
        return sorted(os.listdir(where)) if where.exists() else []


class Dom0(XenHost):
    """The hypervisor: its namespace, vswitchd, the declaration, xenstore and the rendered scripts."""

    def __init__(self, lab: NetLab, daemon, tmp: Path) -> None:
        self.lab, self.daemon, self.ns = lab, daemon, daemon.ns
        self.state_dir = tmp / "openvif-state"
        self.store = tmp / "xenstore"
        self.bin = tmp / "bin"
        self.bin.mkdir()
        for name, text in (("xenstore-read", XENSTORE_READ), ("xenstore-write", XENSTORE_WRITE)):
            (self.bin / name).write_text(text)
            (self.bin / name).chmod(0o755)
        self.vif_script = render("vif-openvif.j2", self.bin / "vif-openvif", daemon.socket)
        self.ifup = render("openvif-ifup.j2", self.bin / "openvif-ifup", daemon.socket)
        self.ifdown = render("openvif-ifdown.j2", self.bin / "openvif-ifdown", daemon.socket)
        self.env = {"PATH": f"{self.bin}:/usr/sbin:/usr/bin:/sbin:/bin", "XENSTORE_DIR": str(self.store),
                    "OPENVIF_STATE_DIR": str(self.state_dir)}

    def declare(self, *profiles: dict) -> None:
        DeclarationStore(str(self.state_dir)).save(
            Declaration(profiles={p.key: p.to_entry() for p in map(Profile.from_params, profiles)}))

    def start_domain(self, domid: int, name: str, mac: str, bridge: str, vm_ns: str) -> str:
        """What xl does before it runs the vif script: the VIF (down), and the domain in xenstore."""
        vif = f"vif{domid}.0"
        self.lab.link(self.ns, vif, vm_ns, "eth0", up=False)
        self.lab.run(vm_ns, "ip", "link", "set", "eth0", "address", mac, "up")
        return self.write_domain(domid, name, mac, bridge)

    def destroy_domain(self, domid: int) -> None:
        self.lab.run(self.ns, "ip", "link", "del", f"vif{domid}.0")

    def hotplug(self, command: str, vif: str, backend: str, *args: str, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", self.ns, str(self.vif_script), command, *args],
                              env={**self.env, "vif": vif, "XENBUS_PATH": backend, "type_if": "vif", **env},
                              capture_output=True, text=True, timeout=60, check=False)

    def run_script(self, script: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", self.ns, str(script), *args], env={**self.env, **env},
                              capture_output=True, text=True, timeout=60, check=False)

    def vsctl(self, *argv: str) -> str:
        done = subprocess.run(["ip", "netns", "exec", self.ns, sys.executable, "-m", "vswitch.vsctl", *argv],
                              env={**ENV, "VSWITCHD_SOCKET": str(self.daemon.socket),
                                   "OPENVIF_STATE_DIR": str(self.state_dir)},
                              capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, (argv, done.stderr)
        return done.stdout.strip()


@pytest.fixture
def dom0(netlab, vswitchd, tmp_path):
    ns = netlab.ns("dom0")
    phys = netlab.ns("phys")
    netlab.link(ns, "peth1", phys, "eth0")
    peer = netlab.ns("peer")
    netlab.link(ns, "pk0", peer, "eth0")
    netlab.run(peer, "ip", "addr", "add", "10.9.0.1/24", "dev", "eth0")
    netlab.run(ns, "ip", "link", "add", "xenbr0", "type", "bridge")
    netlab.run(ns, "ip", "link", "set", "xenbr0", "up")
    netlab.run(ns, "ip", "link", "set", "pk0", "master", "xenbr0")
    daemon = vswitchd(ns)
    host = Dom0(netlab, daemon, tmp_path)
    host.vsctl("add-br", "xenbr1", "--", "add-port", "xenbr1", "peth1", "trunks=10,20")
    host.declare({"vm": "web01", "device": 0, "bridge": "xenbr1", "vlan": 10, "mac": "attached"},
                 {"vm": "db01", "device": 0, "bridge": "xenbr0"})
    return host


def _frame(source: str) -> bytes:
    return bytes.fromhex("ffffffffffff" + source.replace(":", "") + "88b5") + b"openvif-vif-openvif".ljust(46)


def test_profiles_follow_the_vm_across_domids_on_both_datapaths(dom0):
    lab = dom0.lab
    web01, db01 = lab.ns("web01"), lab.ns("db01")
    lab.run(db01, "ip", "addr", "add", "10.9.0.2/24", "dev", "lo")   # moved onto eth0 at each start
    for cycle in range(3):
        web_domid, db_domid = 2 * cycle + 1, 2 * cycle + 2
        web_vif, db_vif = f"vif{web_domid}.0", f"vif{db_domid}.0"
        # web01's domain config says only bridge=xenbr1: the VLAN and the port security come from its profile.
        web_backend = dom0.start_domain(web_domid, "web01", WEB01_MAC, "xenbr1", web01)
        db_backend = dom0.start_domain(db_domid, "db01", DB01_MAC, "xenbr0", db01)
        lab.run(db01, "ip", "addr", "replace", "10.9.0.2/24", "dev", "eth0")
        for _udev_fires_twice in range(2):
            for vif, backend in ((web_vif, web_backend), (db_vif, db_backend)):
                done = dom0.hotplug("online", vif, backend)
                assert done.returncode == 0, (vif, done.stdout, done.stderr)
                assert dom0.xs(f"{backend}/hotplug-status") == "connected"
        assert dom0.vsctl("get", "Port", web_vif, "tag") == "10", cycle
        ids = dom0.vsctl("get", "Interface", web_vif, "external_ids")
        assert "openvif-profile=\"web01/0\"" in ids and f'attached-mac="{WEB01_MAC}"' in ids, ids
        assert dom0.daemon.call("get_state")["ports"][web_vif]["mac"] == WEB01_MAC   # port security
        assert dom0.master(db_vif) == "xenbr0"
        assert dom0.realised() == sorted([f"{web_vif}.json", f"{db_vif}.json"])

        # web01's frames leave the uplink tagged 10 and no other; a spoofed source is dropped.
        spoofed = "00:16:3e:5a:00:99"
        uplink = Capture(lab, lab.ns("phys"), "eth0")
        send_raw(lab, web01, "eth0", _frame(WEB01_MAC), count=3)
        send_raw(lab, web01, "eth0", _frame(spoofed), count=3)
        frames = uplink.frames()
        assert vlan_ids(frames, WEB01_MAC) == {10}, cycle
        assert vlan_ids(frames, spoofed) == set(), "port security let a spoofed source through"
        # db01 on the kernel bridge reaches its peer.
        assert lab.ping_until(db01, "10.9.0.1"), f"db01 cannot reach its peer in cycle {cycle}"

        for vif, backend in ((web_vif, web_backend), (db_vif, db_backend)):
            done = dom0.hotplug("offline", vif, backend)
            assert done.returncode == 0, done.stderr
            dom0.destroy_domain(int(vif[3:].split(".", maxsplit=1)[0]))
        assert dom0.vsctl("list-ports", "xenbr1").split() == ["peth1"]
        assert dom0.kernel_ports("xenbr0") == ["pk0"]
        assert dom0.realised() == []
    assert sorted(dom0.daemon.call("get_state")["ports"]) == ["peth1"]


def _unchanged(dom0) -> tuple:
    return (dom0.daemon.call("get_state")["ports"], dom0.kernel_ports("xenbr0"), dom0.realised())


@pytest.mark.parametrize("case, vm, bridge, mac, expected", [
    ("undeclared bridge", "nobody", "xenbr9", WEB01_MAC, "'xenbr9' does not exist on this host"),
    ("undeclared VLAN", "nobody", "xenbr1.30", WEB01_MAC, "is not carried by"),
    ("VLAN against the profile", "web01", "xenbr1.20", WEB01_MAC, "differs from profile web01/0, which declares "
                                                                  "vlan 10"),
    ("bridge against the profile", "web01", "xenbr0", WEB01_MAC, "differs from 'xenbr1', the bridge of profile "
                                                                 "web01/0"),
    ("multicast attached MAC", "web01", "xenbr1", "01:00:5e:00:00:01", "is a multicast address"),
    ("MAC against the profile", "db02", "xenbr1", "00:16:3e:5a:00:03", "differs from 00:16:3e:5a:00:04"),
    ("garbage bridge string", "web01", "xenbr1.x:y", WEB01_MAC, "is not a bridge as Xen's vif scripts read it"),
])
def test_bad_plugs_fail_as_xen_scripts_do_and_attach_nothing(dom0, case, vm, bridge, mac, expected):
    dom0.declare({"vm": "web01", "device": 0, "bridge": "xenbr1", "vlan": 10, "mac": "attached"},
                 {"vm": "db02", "device": 0, "bridge": "xenbr1", "vlan": 20, "mac": "00:16:3e:5a:00:04"})
    before = _unchanged(dom0)
    backend = dom0.start_domain(7, vm, WEB01_MAC, bridge, dom0.lab.ns("web01"))
    dom0.xs_write(f"{backend}/mac", mac)
    done = dom0.hotplug("online", "vif7.0", backend)
    assert done.returncode == 1, (case, done.stdout, done.stderr)
    assert dom0.xs(f"{backend}/hotplug-status") == "error"
    assert expected in dom0.xs(f"{backend}/hotplug-error"), dom0.xs(f"{backend}/hotplug-error")
    assert expected in done.stderr
    assert _unchanged(dom0) == before, f"{case}: something changed"
    assert dom0.master("vif7.0") == ""


def test_kernel_profile_with_a_vlan_the_kernel_lacks_is_refused_by_name(dom0):
    dom0.declare({"vm": "k01", "device": 0, "bridge": "xenbr0", "vlan": 5})
    before = _unchanged(dom0)
    backend = dom0.start_domain(8, "k01", DB01_MAC, "xenbr0", dom0.lab.ns("k01"))
    done = dom0.hotplug("online", "vif8.0", backend)
    assert done.returncode == 1 and dom0.xs(f"{backend}/hotplug-status") == "error"
    assert "vlan_filtering" in dom0.xs(f"{backend}/hotplug-error")
    assert _unchanged(dom0) == before and dom0.master("vif8.0") == ""


@pytest.mark.parametrize("argv, env, expected", [
    (["frobnicate"], {}, "Invalid command"),
    (["online", "not-an-assignment"], {}, "is not name=value"),
    (["online"], {"type_if": "bogus"}, "unknown interface type"),
    (["online"], {"XENBUS_PATH": ""}, "XENBUS_PATH must be set"),
])
def test_garbage_arguments_are_refused(dom0, argv, env, expected):
    before = _unchanged(dom0)
    backend = dom0.start_domain(9, "web01", WEB01_MAC, "xenbr1", dom0.lab.ns("web01"))
    done = dom0.hotplug(argv[0], "vif9.0", backend, *argv[1:], **env)
    assert done.returncode == 1 and expected in done.stderr, done.stderr
    assert _unchanged(dom0) == before


def test_other_devices_events_are_left_alone(dom0):
    """Xen calls the script for both kinds of device: a vif's add/remove is the tap's business."""
    backend = dom0.start_domain(10, "web01", WEB01_MAC, "xenbr1", dom0.lab.ns("web01"))
    done = dom0.hotplug("add", "vif10.0", backend)
    assert done.returncode == 0 and dom0.xs(f"{backend}/hotplug-status") == ""
    assert "vif10.0" not in dom0.daemon.call("get_state")["ports"]


def test_qemu_ifup_and_ifdown_apply_the_profile(dom0):
    lab = dom0.lab
    lab.run(dom0.ns, "ip", "tuntap", "add", "mode", "tap", "name", "pptap0")
    env = {"OPENVIF_VM": "web01", "OPENVIF_DEVICE": "0", "OPENVIF_MAC": WEB01_MAC}
    for _twice in range(2):
        done = dom0.run_script(dom0.ifup, "pptap0", **env)
        assert done.returncode == 0, done.stderr
    assert dom0.vsctl("get", "Port", "pptap0", "tag") == "10"
    assert dom0.daemon.call("get_state")["ports"]["pptap0"]["mac"] == WEB01_MAC
    done = dom0.run_script(dom0.ifdown, "pptap0")
    assert done.returncode == 0, done.stderr
    assert dom0.vsctl("list-ports", "xenbr1").split() == ["peth1"] and dom0.realised() == []
    bad = dom0.run_script(dom0.ifup, "pptap0", OPENVIF_VM="nobody")
    assert bad.returncode == 1 and "no profile declares one" in bad.stderr
    assert dom0.vsctl("list-ports", "xenbr1").split() == ["peth1"]


def test_ovs_vsctl_callers_get_the_profile_too(dom0):
    """libvirt's own command line (from its virnetdevopenvswitch), with no VLAN: the profile supplies it."""
    lab = dom0.lab
    lab.link(dom0.ns, "vnet0", lab.ns("web01"), "eth0")
    line = ["--timeout=5", "--", "--may-exist", "add-port", "xenbr1", "vnet0",
            "--", "set", "Interface", "vnet0", f'external-ids:attached-mac="{WEB01_MAC}"',
            "--", "set", "Interface", "vnet0", 'external-ids:iface-id="3f1e"',
            "--", "set", "Interface", "vnet0", 'external-ids:vm-id="web01"',
            "--", "set", "Interface", "vnet0", "external-ids:iface-status=active"]
    dom0.vsctl(*line)
    assert dom0.vsctl("get", "Port", "vnet0", "tag") == "10"
    assert dom0.daemon.call("get_state")["ports"]["vnet0"]["mac"] == WEB01_MAC
    # The same VM asking for another VLAN is refused whole: the port is not added.
    lab.link(dom0.ns, "vnet1", lab.ns("web01b"), "eth0")
    refused = subprocess.run(["ip", "netns", "exec", dom0.ns, sys.executable, "-m", "vswitch.vsctl", "--",
                              "add-port", "xenbr1", "vnet1", "tag=20", "--", "set", "Interface", "vnet1",
                              'external-ids:vm-id="web01"'],
                             env={**ENV, "VSWITCHD_SOCKET": str(dom0.daemon.socket),
                                  "OPENVIF_STATE_DIR": str(dom0.state_dir)},
                             capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode == 1 and "differs from profile web01/0" in refused.stderr, refused.stderr
    assert dom0.vsctl("list-ports", "xenbr1").split() == ["peth1", "vnet0"]


def test_debian_vif_openvswitch_gets_the_profile_through_ovs_vsctl(netlab, vswitchd, tmp_path):
    """Xen's own vif-openvswitch, unmodified: bridge=xenbr1 in the domain, VLAN and port security from the
    profile, across two domids; a domain asking for a VLAN its profile does not have is refused."""
    from test_vsctl_callers import XenHost

    if not Path("/usr/bin/ovs-vsctl").exists():
        pytest.fail("/usr/bin/ovs-vsctl missing (the mount point XenHost binds over): scripts/bootstrap.sh test")
    ns, phys = netlab.ns("dom0"), netlab.ns("phys")
    netlab.link(ns, "peth1", phys, "eth0")
    daemon = vswitchd(ns)
    state_dir = tmp_path / "openvif-state"
    DeclarationStore(str(state_dir)).save(Declaration(profiles={"web01/0": Profile.from_params(
        {"vm": "web01", "device": 0, "bridge": "xenbr1", "vlan": 10, "mac": "attached"}).to_entry()}))
    xen = XenHost(tmp_path, daemon)
    xen.wrapper.write_text(f"#!/bin/sh\nPYTHONPATH={MODULE_UTILS} VSWITCHD_SOCKET={daemon.socket} "
                           f"OPENVIF_STATE_DIR={state_dir} exec {sys.executable} -m vswitch.vsctl \"$@\"\n")
    vsctl = [sys.executable, "-m", "vswitch.vsctl"]
    env = {**ENV, "VSWITCHD_SOCKET": str(daemon.socket), "OPENVIF_STATE_DIR": str(state_dir)}

    def ctl(*argv: str) -> str:
        return subprocess.run([*vsctl, *argv], env=env, capture_output=True, text=True, timeout=60,
                              check=True).stdout.strip()
    ctl("add-br", "xenbr1", "--", "add-port", "xenbr1", "peth1", "trunks=10,20")
    web01 = netlab.ns("web01")
    for domid in (4, 5):
        vif = f"vif{domid}.0"
        netlab.link(ns, vif, web01, "eth0", up=False)
        netlab.run(web01, "ip", "link", "set", "eth0", "address", WEB01_MAC, "up")
        backend = xen.domain(domid, 0, "web01", WEB01_MAC, "xenbr1")
        done = xen.hotplug(ns, "online", vif, backend)
        assert done.returncode == 0, (done.stderr, (xen.log / "xen-hotplug.log").read_text())
        assert ctl("get", "Port", vif, "tag") == "10"
        assert daemon.call("get_state")["ports"][vif]["mac"] == WEB01_MAC
        uplink = Capture(netlab, phys, "eth0")
        send_raw(netlab, web01, "eth0", _frame(WEB01_MAC), count=3)
        assert vlan_ids(uplink.frames(), WEB01_MAC) == {10}
        assert xen.hotplug(ns, "offline", vif, backend).returncode == 0
        netlab.run(ns, "ip", "link", "del", vif)
    netlab.link(ns, "vif6.0", web01, "eth0", up=False)
    backend = xen.domain(6, 0, "web01", WEB01_MAC, "xenbr1.20")
    done = xen.hotplug(ns, "online", "vif6.0", backend)
    assert done.returncode != 0 and xen.read(f"{backend}/hotplug-status") == "error"
    assert ctl("list-ports", "xenbr1").split() == ["peth1"]
