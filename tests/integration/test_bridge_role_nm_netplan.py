"""The bridge role on hosts that NetworkManager or netplan manage: the same guarded move as in
test_bridge_role.py (namespaces, a real gateway), then the files of the detected format.

Detection looks at the host's root (bridge_persist_root here): /usr/sbin/netplan means netplan,
/usr/sbin/NetworkManager means NetworkManager unless ifupdown has a stanza for the uplink.
"""
from __future__ import annotations

import stat
import subprocess

import pytest
import yaml
from test_bridge_role import GATEWAY, HOST_IP, PhysicalNetwork, assert_ip_on_bridge, golden, persisted

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STATIC = {"bridge_bootproto": "static", "bridge_address": f"{HOST_IP}/24", "bridge_gateway": GATEWAY,
          "bridge_dns": [GATEWAY], "bridge_dns_search": ["lab.example"]}


@pytest.fixture
def net(netlab, ansible_env, tmp_path):
    """test_bridge_role.py's physical network: a gateway namespace and the host whose IP is on eth0."""
    physical = PhysicalNetwork(netlab, ansible_env, tmp_path)
    try:
        yield physical
    finally:
        physical.stop()


def fake_binary(root, path: str) -> None:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("")


def test_networkmanager_host_detected_keyfiles_0600_and_idempotent(net):
    fake_binary(net.root, "/usr/sbin/NetworkManager")
    rc, out, stats = net.play(**STATIC)
    assert rc == 0, out
    assert_ip_on_bridge(net, dhcp=False)
    assert persisted(net.root, "etc/NetworkManager") == golden("lab_static", "networkmanager")
    for keyfile in (net.root / "etc/NetworkManager/system-connections").iterdir():
        assert stat.S_IMODE(keyfile.stat().st_mode) == 0o600, keyfile   # NetworkManager ignores others
    rc, out, stats = net.play(**STATIC)
    assert rc == 0 and stats["changed"] == 0, out


def test_ifupdown_stanza_for_the_uplink_wins_over_networkmanager(net):
    """Debian with a desktop: ifupdown owns the NICs /etc/network/interfaces names."""
    fake_binary(net.root, "/usr/sbin/NetworkManager")
    fake_binary(net.root, "/sbin/ifup")
    interfaces = net.root / "etc/network/interfaces"
    interfaces.parent.mkdir(parents=True)
    interfaces.write_text("auto lo\niface lo inet loopback\n\nallow-hotplug eth0\niface eth0 inet dhcp\n")
    rc, out, stats = net.play(**STATIC)
    assert rc == 0, out
    assert (net.root / "etc/network/interfaces.d/xenbr0").exists()
    assert not (net.root / "etc/NetworkManager").exists()


def test_networkmanager_refuses_a_fractional_forward_delay_before_the_host_changes(net):
    before = net.addressing()
    rc, out, stats = net.play(bridge_persist_format="networkmanager", bridge_stp=True, bridge_forward_delay=4.5,
                              **STATIC)
    assert rc != 0 and "bridge_forward_delay: 4.5" in out and "whole seconds" in out, out
    assert net.addressing() == before and not (net.root / "etc").exists()


CLOUD_INIT = """network:
  version: 2
  ethernets:
    eth0:
      addresses: [10.77.0.50/24]
      routes: [{to: default, via: 10.77.0.1}]
      nameservers: {addresses: [10.77.0.1]}
    eth1:
      dhcp4: true
"""


def test_netplan_host_detected_uplink_addressing_retired_generate_accepts_and_idempotent(net):
    fake_binary(net.root, "/usr/sbin/netplan")
    netplan_dir = net.root / "etc/netplan"
    netplan_dir.mkdir(parents=True)
    (netplan_dir / "50-cloud-init.yaml").write_text(CLOUD_INIT)
    (netplan_dir / "50-cloud-init.yaml").chmod(0o600)
    rc, out, stats = net.play(**STATIC)
    assert rc == 0, out
    assert_ip_on_bridge(net, dhcp=False)
    ours = netplan_dir / "90-openvif-xenbr0.yaml"
    assert ours.read_text() == golden("lab_static", "netplan")["90-openvif-xenbr0.yaml"]
    assert stat.S_IMODE(ours.stat().st_mode) == 0o600
    # the distribution's file keeps eth1 and loses eth0's addressing; its original is kept aside
    left = yaml.safe_load((netplan_dir / "50-cloud-init.yaml").read_text())["network"]["ethernets"]
    assert "addresses" not in left.get("eth0", {}) and "routes" not in left.get("eth0", {}), left
    assert left["eth1"] == {"dhcp4": True}
    assert (netplan_dir / "50-cloud-init.yaml.openvif-bak").read_text() == CLOUD_INIT
    # what netplan makes of it all: the bridge has the address, the NIC is its port and has none
    subprocess.run(["netplan", "generate", "--root-dir", str(net.root)], check=True, capture_output=True, timeout=60)
    network = net.root / "run/systemd/network"
    assert "Address=10.77.0.50/24" in (network / "10-netplan-xenbr0.network").read_text()
    uplink = (network / "10-netplan-eth0.network").read_text()
    assert "Bridge=xenbr0" in uplink and "Address=" not in uplink and "Gateway=" not in uplink, uplink
    rc, out, stats = net.play(**STATIC)
    assert rc == 0 and stats["changed"] == 0, out
