"""The bridge role's boot-time files for a bond uplink (``bridge_uplink: [eth0, eth1]``): golden files per
format (``golden/bridge/<case>/<format>/``), each read back the way its consumer reads it: bash for ifcfg,
systemd's INI dialect for networkd, interfaces(5) stanzas for ifupdown, NetworkManager's own parser
(``nmcli --offline``) for the keyfiles, ``netplan generate`` for netplan.

Rendered with plain Jinja2 configured as Ansible's template module is, file by file as the role's
persist_<format>.yml writes them. The bond is what vswitch_host_ip returns (``bond``): its record and
the bonding driver's own option names (kernel_bonds.driver_options), which ifcfg, ifupdown and
NetworkManager use; networkd and netplan have names of their own, checked here against the record.
"""
from __future__ import annotations

import shlex
import subprocess

import pytest
from ansible.plugins.filter.core import to_uuid
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.kernel_bonds import bond_attrs, driver_options
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.model import BondSpec
from test_persist_bridge import CASES, GOLDEN, parse_ifcfg, parse_interfaces, parse_unit, template_env
from test_persist_bridge_nm_netplan import netplan_generate, nm_normalised


def bond(**declared) -> dict:
    spec = BondSpec.from_params({"bond": "bond0", "members": ["eth0", "eth1"], **declared})
    record = spec.record()
    return {"name": spec.name, **record, "driver_options": driver_options(record)}


BOND_CASES = {
    # What tests/integration/test_bridge_role_bond.py persists (vswitchd bonds: networkd only).
    "userspace_bond": dict(CASES["lab_static"], dns=[], dns_search=[], datapath="userspace", uplink="bond0",
                           bond=bond(mode="active-backup", primary="eth0")),
    "kernel_bond": dict(CASES["lab_static"], uplink="bond0",
                        bond=bond(mode="active-backup", primary="eth1", miimon=100, updelay=200)),
    "kernel_bond_lacp": dict(CASES["dhcp"], uplink="bond0",
                             bond=bond(mode="balance-tcp", lacp="active", lacp_rate="fast")),
}
FORMATS = ("ifcfg", "networkd", "ifupdown", "networkmanager", "netplan")
PAIRS = [(case, fmt) for case, cfg in sorted(BOND_CASES.items())
         for fmt in (FORMATS if cfg["datapath"] == "kernel" else ("networkd",))]


def files_of(fmt: str, cfg: dict) -> list[tuple[str, str, str | None]]:
    """(file, template, port) as persist_<fmt>.yml writes them."""
    br, name, members = cfg["bridge"], cfg["bond"]["name"], cfg["bond"]["members"]
    kernel = cfg["datapath"] == "kernel"
    if fmt == "ifcfg":
        return [(f"ifcfg-{br}", "ifcfg-bridge.j2", None)] + [
            (f"ifcfg-{port}", "ifcfg-uplink.j2", port) for port in [name, *members]]
    if fmt == "networkd":
        files = [(f"05-openvif-{br}.network", "networkd-bridge.network.j2", None)]
        if kernel:
            files += [(f"05-openvif-{br}.netdev", "networkd-bridge.netdev.j2", None),
                      (f"05-openvif-{name}.netdev", "networkd-bond.netdev.j2", None),
                      (f"05-openvif-{name}.network", "networkd-uplink.network.j2", name)]
        return files + [(f"05-openvif-{m}.network", "networkd-uplink.network.j2", m) for m in members]
    if fmt == "ifupdown":
        return [(f"interfaces.d/{br}", "ifupdown-bridge.j2", None)]
    if fmt == "networkmanager":
        return [(f"system-connections/openvif-{br}.nmconnection", "nm-bridge.nmconnection.j2", None),
                (f"system-connections/openvif-{br}-port-{name}.nmconnection", "nm-uplink.nmconnection.j2", None),
                (f"conf.d/95-openvif-bridge-{br}.conf", "nm-unmanaged-except.conf.j2", None)] + [
            (f"system-connections/openvif-{br}-bond-{m}.nmconnection", "nm-uplink.nmconnection.j2", m)
            for m in members]
    return [(f"90-openvif-{br}.yaml", "netplan-bridge.yaml.j2", None)]


def render(fmt: str, cfg: dict) -> dict[str, str]:
    env = template_env()
    return {dest: env.get_template(src).render(cfg=cfg, bridge_nic=port) for dest, src, port in files_of(fmt, cfg)}


@pytest.mark.parametrize(("case", "fmt"), PAIRS)
def test_bond_files_match_golden(case, fmt):
    rendered = render(fmt, BOND_CASES[case])
    base = GOLDEN / case / fmt
    assert sorted(rendered) == sorted(str(p.relative_to(base)) for p in base.rglob("*") if p.is_file())
    for name, text in rendered.items():
        assert text == (base / name).read_text(), f"{case}/{fmt}/{name} differs from the golden file"


def test_driver_options_are_the_attributes_the_backend_sends():
    """One bond, two spellings: the boot files' driver options are the netlink attributes kernel.py sends
    (the primary is sent as 0 when none is declared, and then not written)."""
    netlink = {"lacp_rate": "bond_ad_lacp_rate"}
    for case in ("kernel_bond", "kernel_bond_lacp"):
        record = BOND_CASES[case]["bond"]
        sent = set(bond_attrs(record, {"eth0": 2, "eth1": 3}.__getitem__))
        written = {netlink.get(key, f"bond_{key}") for key in record["driver_options"]}
        assert written == sent - (set() if record["primary"] else {"bond_primary"}), case


def kernel_cases() -> list[str]:
    return sorted(case for case, cfg in BOND_CASES.items() if cfg["datapath"] == "kernel")


@pytest.mark.parametrize("case", sorted(BOND_CASES))
def test_networkd_reads_the_bond(case):
    cfg = BOND_CASES[case]
    files = {name: parse_unit(text) for name, text in render("networkd", cfg).items()}
    record = cfg["bond"]
    for member in record["members"]:
        unit = files[f"05-openvif-{member}.network"]
        network = dict(unit["Network"])
        assert dict(unit["Match"])["Name"] == member and "Address" not in network and "DHCP" not in network
        if cfg["datapath"] == "userspace":   # vswitchd's bond: the member is only kept up and unaddressed
            assert network["LinkLocalAddressing"] == "no" and "Bond" not in network and "Bridge" not in network
        else:
            assert network["Bond"] == record["name"] and "Bridge" not in network
            assert (network.get("PrimarySlave") == "yes") == (record["primary"] == member)
    if cfg["datapath"] == "userspace":
        assert not [name for name in files if name.endswith(".netdev")]
        return
    netdev = files[f"05-openvif-{record['name']}.netdev"]
    assert dict(netdev["NetDev"]) == {"Name": record["name"], "Kind": "bond", "MTUBytes": str(cfg["mtu"])}
    options = dict(netdev["Bond"])
    if record["mode"] == "balance-tcp":
        assert options["Mode"] == "802.3ad" and options["TransmitHashPolicy"] == "layer3+4"
        assert options["LACPTransmitRate"] == record["lacp_rate"]
    else:
        assert options["Mode"] == "active-backup"
    assert options["MIIMonitorSec"] == f"{record['miimon']}ms"
    assert options["UpDelaySec"] == f"{record['updelay']}ms" and options["DownDelaySec"] == f"{record['downdelay']}ms"
    assert dict(files[f"05-openvif-{record['name']}.network"]["Network"]) == {"Bridge": cfg["bridge"]}


@pytest.mark.parametrize("case", kernel_cases())
def test_ifcfg_says_bond_master_and_slaves(case):
    cfg = BOND_CASES[case]
    record = cfg["bond"]
    files = {name: parse_ifcfg(text) for name, text in render("ifcfg", cfg).items()}
    for name, text in render("ifcfg", cfg).items():   # initscripts source them: bash reads the same values
        script = text + "\n" + "\n".join(f'printf "%s=%s\\n" {k} "${k}"' for k in files[name])
        out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=10, check=True)
        assert dict(line.split("=", 1) for line in out.stdout.splitlines()) == files[name], name
    assert files[f"ifcfg-{cfg['bridge']}"]["PIFDEV"] == record["name"]
    master = files[f"ifcfg-{record['name']}"]
    assert (master["TYPE"], master["BONDING_MASTER"], master["BRIDGE"]) == ("Bond", "yes", cfg["bridge"])
    assert dict(word.split("=", 1) for word in shlex.split(master["BONDING_OPTS"])) == record["driver_options"]
    assert "IPADDR" not in master
    for member in record["members"]:
        slave = files[f"ifcfg-{member}"]
        assert (slave["MASTER"], slave["SLAVE"], slave["BOOTPROTO"]) == (record["name"], "yes", "none")
        assert "BRIDGE" not in slave and "IPADDR" not in slave


@pytest.mark.parametrize("case", kernel_cases())
def test_ifupdown_says_bond_slaves_and_options(case):
    cfg = BOND_CASES[case]
    record = cfg["bond"]
    stanzas = parse_interfaces(render("ifupdown", cfg)[f"interfaces.d/{cfg['bridge']}"])
    assert stanzas[cfg["bridge"]]["options"]["bridge_ports"] == record["name"]
    bond_stanza = stanzas[record["name"]]
    assert bond_stanza["method"] == "manual"
    options = dict(bond_stanza["options"])
    assert options.pop("bond-slaves").split() == record["members"]
    assert options.pop("mtu") == str(cfg["mtu"])
    assert {key[len("bond-"):].replace("-", "_"): value for key, value in options.items()} == record["driver_options"]
    for member in record["members"]:
        assert stanzas[member]["method"] == "manual" and not stanzas[member]["options"]


@pytest.mark.parametrize("case", kernel_cases())
def test_networkmanager_parses_bond_and_members(case):
    cfg = BOND_CASES[case]
    record, br = cfg["bond"], cfg["bridge"]
    files = render("networkmanager", cfg)
    bond_profile = nm_normalised(files[f"system-connections/openvif-{br}-port-{record['name']}.nmconnection"])
    conn = bond_profile["connection"]
    assert (conn["type"], conn["interface-name"]) == ("bond", record["name"])
    assert (conn["master"], conn["slave-type"]) == (to_uuid(f"openvif.vswitch bridge {br}"), "bridge")
    assert bond_profile["bond"] == record["driver_options"]
    assert "ipv4" not in bond_profile
    for member in record["members"]:
        profile = nm_normalised(files[f"system-connections/openvif-{br}-bond-{member}.nmconnection"])
        mconn = profile["connection"]
        assert (mconn["type"], mconn["interface-name"], mconn["slave-type"]) == ("ethernet", member, "bond")
        assert mconn["master"] == conn["uuid"] and "ipv4" not in profile
    dropin = files[f"conf.d/95-openvif-bridge-{br}.conf"]
    for device in (br, record["name"], *record["members"]):
        assert f"except:interface-name:={device}" in dropin and f"interface-name:={device}" in dropin


@pytest.mark.parametrize("case", kernel_cases())
def test_netplan_generate_gives_networkd_the_bond(case, tmp_path):
    cfg = BOND_CASES[case]
    record = cfg["bond"]
    units = netplan_generate(tmp_path, render("netplan", cfg))
    netdev = units[f"10-netplan-{record['name']}.netdev"]
    assert dict(netdev["NetDev"])["Kind"] == "bond"
    options = dict(netdev["Bond"])
    assert options["Mode"] == ("802.3ad" if record["mode"] == "balance-tcp" else "active-backup")
    if record["mode"] == "balance-tcp":
        assert options["TransmitHashPolicy"] == "layer3+4" and options["LACPTransmitRate"] == record["lacp_rate"]
    assert options["MIIMonitorSec"] == f"{record['miimon']}ms"
    assert dict(units[f"10-netplan-{record['name']}.network"]["Network"])["Bridge"] == cfg["bridge"]
    for member in record["members"]:
        network = dict(units[f"10-netplan-{member}.network"]["Network"])
        assert network["Bond"] == record["name"] and "Address" not in network and "DHCP" not in network
        assert (network.get("PrimarySlave") == "true") == (record["primary"] == member)
