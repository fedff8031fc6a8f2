"""The hotplug scripts on a VLAN-filtering Linux bridge (run inside tests/vmkernel/vm.py).

Not collected by a plain ``pytest tests`` run (the name does not match ``test_*.py``): this
machine's kernel lacks vlan_filtering. tests/integration/test_kernel_vlan_filtering.py boots
Debian's kernel and runs this file there, in the same guest boot as kernel_vlan_checks.py.

dom0 is a namespace whose kernel bridge xenbr0 (uplink peth0, a VLAN network xapi30 on it) and
VM port profiles are declared through the modules, as an operator would. VMs are namespaces
whose eth0 is wired to a ``vif<domid>.0`` in dom0, made when the "domain" starts and deleted when
it is destroyed, with a new domid at every start. The role's ``vif-openvif`` (rendered for this
checkout, as test_hotplug.py does) and Debian's own ``vif-bridge`` (extracted from
xen-utils-common by scripts/bootstrap.sh) run as xl runs them, with a stand-in xenstore.
The proof is what the kernel holds (``bridge -j vlan show``) and frames on the wire.
"""
from __future__ import annotations

import json
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from ansible_runner import run_playbook, write_inventory

sys.path.insert(0, str(Path(__file__).resolve().parent / "daemon"))
from vswitchd_lab import Capture, send_raw, vlan_ids  # noqa: E402, I001  (first: it puts vswitch on sys.path)
from test_hotplug import TEMPLATES, XenHost, render  # noqa: E402  (the role's template, rendered for the checkout)
from test_vsctl_callers import XEN_SCRIPTS, XENSTORE  # noqa: E402  (Debian's scripts; the xenstore stand-in)

ROLE_DEFAULTS = yaml.safe_load((TEMPLATES.parent / "defaults" / "main.yml").read_text())
NETLAB_PREFIX = "pg"   # this area's namespaces (tests/conftest.py)
pytestmark = pytest.mark.integration

# VM -> (MAC, how it is plugged, Xen's bridge=, the VIF's VLAN entries once plugged).
ACCESS10 = [{"vlan": 10, "flags": ["PVID", "Egress Untagged"]}]
ACCESS20 = [{"vlan": 20, "flags": ["PVID", "Egress Untagged"]}]
UNTAGGED = [{"vlan": 1, "flags": ["PVID", "Egress Untagged"]}]   # the kernel's default_pvid: the untagged network
VMS = {
    "web01": ("00:16:3e:5a:01:01", "vif-openvif", "xenbr0", ACCESS10),       # VLAN from its profile
    "app01": ("00:16:3e:5a:01:02", "vif-openvif", "xenbr0.20", ACCESS20),    # caller and profile agree
    "lb01": ("00:16:3e:5a:01:03", "vif-openvif", "xenbr0", [{"vlan": 10}, {"vlan": 20}]),   # trunk profile
    "plain01": ("00:16:3e:5a:01:04", "vif-bridge", "xenbr0", UNTAGGED),      # Debian's script, no profile
    "v30vm01": ("00:16:3e:5a:01:05", "vif-bridge", "xapi30", None),          # on the VLAN network's bridge
}
PROFILES = [{"vm": "web01", "device": 0, "bridge": "xenbr0", "vlan": 10},
            {"vm": "app01", "device": 0, "bridge": "xenbr0", "vlan": 20},
            {"vm": "lb01", "device": 0, "bridge": "xenbr0", "trunks": "10,20"}]
PLAY = [{
    "hosts": "dom0", "gather_facts": False,
    "tasks": [
        {"name": "the bridge and its trunk uplink",
         "openvif.vswitch.vswitch_bridge": {"name": "xenbr0", "uplink": "peth0"}},
        {"name": "a VLAN network (the bridge filters VLANs from now on)",
         "openvif.vswitch.vswitch_vlan": {"name": "xapi30", "parent": "xenbr0", "tag": 30}},
        {"name": "VM port profiles", "loop": PROFILES, "openvif.vswitch.vswitch_port": {
            "vm": "{{ item.vm }}", "device": "{{ item.device }}", "bridge": "{{ item.bridge }}",
            "vlan": "{{ item.vlan | default(omit) }}", "trunks": "{{ item.trunks | default(omit) }}"}},
        {"name": "facts", "openvif.vswitch.vswitch_info": {"fdb": False}},
        {"name": "the profiles are shown, realised by no interface yet",
         "ansible.builtin.assert": {"that": [
             "vswitch.profiles['web01/0'].vlan == 10", "vswitch.profiles['lb01/0'].interfaces == []"]}},
    ],
}]


class KernelDom0(XenHost):
    """dom0 on the kernel datapath: its namespace, the declaration, xenstore, and both vif scripts."""

    def __init__(self, lab, tmp: Path) -> None:
        self.lab, self.ns = lab, lab.ns("dom0")
        self.state_dir, self.store, self.bin = tmp / "openvif-state", tmp / "xenstore", tmp / "bin"
        self.varlog = tmp / "var-log"
        (self.varlog / "xen").mkdir(parents=True)
        self.bin.mkdir()
        for name in ("xenstore-read", "xenstore-write", "xenstore-exists", "xenstore-rm"):
            (self.bin / name).write_text(XENSTORE)
            (self.bin / name).chmod(0o755)
        # No vswitchd here: the role's default socket (absent in the guest's fresh /run), so only the
        # kernel datapath answers, as on a host that has no vswitchd running.
        self.vif_openvif = render("vif-openvif.j2", self.bin / "vif-openvif", ROLE_DEFAULTS["vswitchd_socket"])
        self.env = {"PATH": f"{self.bin}:/usr/sbin:/usr/bin:/sbin:/bin", "XENSTORE_DIR": str(self.store),
                    "OPENVIF_STATE_DIR": str(self.state_dir)}

    def start_domain(self, domid: int, name: str, bridge: str) -> tuple[str, str]:
        """What xl does before the vif script: the VIF (down) wired to the VM, the domain in xenstore."""
        vif, mac = f"vif{domid}.0", VMS[name][0]
        vm_ns = self.lab.ns(name)
        self.lab.link(self.ns, vif, vm_ns, "eth0", up=False)
        self.lab.run(vm_ns, "ip", "link", "set", "eth0", "address", mac, "up")
        return vif, self.write_domain(domid, name, mac, bridge)

    def destroy_domain(self, vif: str) -> None:
        self.lab.run(self.ns, "ip", "link", "del", vif)

    def hotplug(self, script: str, command: str, vif: str, backend: str) -> subprocess.CompletedProcess:
        """Run a vif script as xl does. Debian's logs to /var/log/xen: a scratch directory is bound over
        /var/log in a private mount namespace (the guest's root is read-only, and the host is not touched)."""
        path = self.vif_openvif if script == "vif-openvif" else XEN_SCRIPTS / script
        line = textwrap.dedent(f"""
            mount --bind {self.varlog} /var/log
            exec /bin/bash {path} {command}
        """)
        return subprocess.run(["ip", "netns", "exec", self.ns, "unshare", "--mount", "--propagation", "private",
                               "sh", "-c", line],
                              env={**self.env, "vif": vif, "XENBUS_PATH": backend, "type_if": "vif"},
                              capture_output=True, text=True, timeout=120, check=False)

    def vlans(self) -> dict:
        """Each port's VLAN entries as the kernel holds them, one per VID."""
        out = self.lab.run(self.ns, "bridge", "-j", "vlan", "show").stdout
        return {entry["ifname"]: entry["vlans"] for entry in json.loads(out or "[]")}


@pytest.fixture
def dom0(netlab, ansible_env, tmp_path):
    if not (XEN_SCRIPTS / "vif-bridge").exists():
        pytest.fail(f"{XEN_SCRIPTS}/vif-bridge missing: run scripts/bootstrap.sh test (it extracts Debian's "
                    "xen-utils-common)")
    host = KernelDom0(netlab, tmp_path)
    netlab.link(host.ns, "peth0", netlab.ns("wire"), "eth0")
    for name in VMS:   # no IPv6 chatter from the VMs: only the test's frames
        netlab.run(netlab.ns(name), "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
    inventory = write_inventory(tmp_path, {"dom0": host.ns}, sys.executable, group="dom0")
    (tmp_path / "site.yml").write_text(yaml.safe_dump(PLAY))
    rc, out, _stats = run_playbook(dict(ansible_env, OPENVIF_STATE_DIR=str(host.state_dir)), inventory,
                                   tmp_path / "site.yml")
    assert rc == 0, out
    return host


def _frame(source: str, vid: int | None = None) -> bytes:
    tag = struct.pack("!HH", 0x8100, vid) if vid is not None else b""
    return (bytes.fromhex("ffffffffffff" + source.replace(":", "")) + tag + bytes.fromhex("88b5")
            + b"openvif-kernel-hotplug".ljust(46))


def _mac(name: str) -> str:
    return VMS[name][0]


def test_vifs_of_changing_domids_get_exactly_their_declared_vlan_entries_and_nothing_else(dom0):
    lab = dom0.lab
    linked = dom0.vlans()
    uplink = linked["peth0"]   # the untagged network and every VLAN, to the wire
    assert [entry["vlan"] for entry in uplink] == list(range(1, 4095)) and uplink[0] == UNTAGGED[0], uplink[:3]
    assert all("flags" not in entry for entry in uplink[1:]), [e for e in uplink[1:] if "flags" in e][:3]
    links = {link["ifname"]: link for link in json.loads(lab.run(dom0.ns, "ip", "-d", "-j", "link").stdout)}
    assert links["xenbr0"]["linkinfo"]["info_data"]["vlan_filtering"] == 1
    baseline = (linked, dom0.kernel_ports("xenbr0"), dom0.kernel_ports("xapi30"))
    on_vlan30 = linked["xapi30-vn"]   # what a plain port of the VLAN network's (unfiltered) bridge holds
    # Two starts of each VM, each with a new domid: the domid change is the point. (On this machine's
    # kernel test_hotplug.py runs three on both datapaths; under TCG a third costs about five minutes.)
    for cycle in range(2):
        vifs = {}
        for index, (name, (_mac_of_vm, script, bridge, _entries)) in enumerate(VMS.items()):
            domid = 1 + cycle * len(VMS) + index   # a new domid at every start, as Xen gives
            vif, backend = dom0.start_domain(domid, name, bridge)
            vifs[name] = vif, backend
            for _udev_fires_twice in range(2):
                done = dom0.hotplug(script, "online", vif, backend)
                assert done.returncode == 0, (name, vif, done.stdout, done.stderr,
                                              (dom0.varlog / "xen" / "xen-hotplug.log").read_text()
                                              if (dom0.varlog / "xen" / "xen-hotplug.log").exists() else "")
                assert dom0.xs(f"{backend}/hotplug-status") == "connected", (name, cycle)

        # Exactly the declared entries: the VIFs' own, and everything else as it was.
        expected = dict(linked)
        for name, (vif, _backend) in vifs.items():
            expected[vif] = VMS[name][3] if VMS[name][3] is not None else on_vlan30
        held = dom0.vlans()
        assert held == expected, (cycle, {name: entries for name, entries in held.items() if name != "peth0"})
        assert {name: dom0.master(vif) for name, (vif, _b) in vifs.items()} == {
            "web01": "xenbr0", "app01": "xenbr0", "lb01": "xenbr0", "plain01": "xenbr0", "v30vm01": "xapi30"}
        assert dom0.realised() == sorted(f"{vifs[name][0]}.json" for name in ("web01", "app01", "lb01"))

        # Frames cross only in their VLAN: on the wire with their tag, at the VMs of that VLAN only.
        wire = Capture(lab, lab.ns("wire"), "eth0", seconds=30.0)
        at = {name: Capture(lab, lab.ns(name), "eth0", seconds=30.0) for name in VMS}
        send_raw(lab, lab.ns("web01"), "eth0", _frame(_mac("web01")), count=2)
        send_raw(lab, lab.ns("lb01"), "eth0", _frame(_mac("lb01"), 20), count=2)
        send_raw(lab, lab.ns("lb01"), "eth0", _frame(_mac("lb01"), 30), count=2)   # not one of its trunks
        send_raw(lab, lab.ns("plain01"), "eth0", _frame(_mac("plain01")), count=2)
        send_raw(lab, lab.ns("v30vm01"), "eth0", _frame(_mac("v30vm01")), count=2)
        seen = {"wire": wire.frames(), **{name: capture.frames() for name, capture in at.items()}}
        heard = {(where, who): vlan_ids(frames, _mac(who)) for where, frames in seen.items() for who in VMS
                 if where != who}
        wanted = {("wire", "web01"): {10}, ("lb01", "web01"): {10},
                  ("wire", "lb01"): {20}, ("app01", "lb01"): {None},
                  ("wire", "plain01"): {None},
                  ("wire", "v30vm01"): {30}}
        assert {key: ids for key, ids in heard.items() if ids} == wanted, cycle

        for name, (vif, backend) in vifs.items():
            done = dom0.hotplug(VMS[name][1], "offline", vif, backend)
            assert done.returncode == 0, (name, done.stderr)
            dom0.destroy_domain(vif)
        # Offline leaves nothing: the bridges hold what the playbook made, no VIF record is left.
        assert (dom0.vlans(), dom0.kernel_ports("xenbr0"), dom0.kernel_ports("xapi30")) == baseline, cycle
        assert dom0.realised() == []

    # (In the same test: the playbook that declares the host takes minutes of TCG.) A caller that
    # contradicts the profile: refused as Xen's scripts fail, the VIF not attached, nothing changed.
    vif, backend = dom0.start_domain(40, "web01", "xenbr0.20")   # web01's profile says VLAN 10
    done = dom0.hotplug("vif-openvif", "online", vif, backend)
    assert done.returncode == 1 and dom0.xs(f"{backend}/hotplug-status") == "error", done.stderr
    assert "differs from profile web01/0, which declares vlan 10" in dom0.xs(f"{backend}/hotplug-error")
    assert dom0.master(vif) == "" and dom0.realised() == []
    assert (dom0.vlans(), dom0.kernel_ports("xenbr0"), dom0.kernel_ports("xapi30")) == baseline
