"""The bridge role's NetworkManager keyfiles and netplan file: golden files, and each read back by
its consumer: NetworkManager's own parser (``nmcli --offline``, which refuses what NetworkManager
would refuse) and ``netplan generate``, whose systemd-networkd files must say bridge, uplink and
address as the role meant. (tests/integration/test_bridge_persist_nm.py loads the keyfiles into a
running NetworkManager.) Rendering is the one test_persist_bridge.py uses, with Ansible's own
``to_uuid`` filter.
"""
from __future__ import annotations

import ipaddress
import shutil
import subprocess
from pathlib import Path

import pytest
from ansible.plugins.filter.core import to_uuid
from test_persist_bridge import CASES as BASE_CASES
from test_persist_bridge import GOLDEN, parse_unit, template_env

# NetworkManager's bridge.forward-delay is whole seconds (the role refuses 4.5 s before the host
# changes): the STP case with a whole number stands in for stp_search_nomac there.
CASES = {name: cfg for name, cfg in BASE_CASES.items() if name != "userspace_dhcp"}
CASES["stp_whole_nomac"] = dict(BASE_CASES["stp_search_nomac"], forward_delay=5)
FORMATS = {"stp_search_nomac": ["netplan"], "stp_whole_nomac": ["networkmanager"]}
# Without STP the role gives NetworkManager's keyfile 15 s, not 0 (roles/bridge/tasks/main.yml: 0 there
# means NetworkManager's default, 15 s, which it writes into the bridge when it activates the profile).
NM_CASES = {name: dict(cfg, forward_delay=15) if not cfg["stp"] and not cfg["forward_delay"] else cfg
            for name, cfg in CASES.items()}

FILES = {
    "networkmanager": {"system-connections/openvif-{bridge}.nmconnection": "nm-bridge.nmconnection.j2",
                       "system-connections/openvif-{bridge}-port-{uplink}.nmconnection": "nm-uplink.nmconnection.j2",
                       "conf.d/95-openvif-bridge-{bridge}.conf": "nm-unmanaged-except.conf.j2"},
    "netplan": {"90-openvif-{bridge}.yaml": "netplan-bridge.yaml.j2"},
}
PAIRS = [(case, fmt) for case in sorted(CASES) for fmt in FORMATS.get(case, sorted(FILES))]


def render(fmt: str, cfg: dict) -> dict[str, str]:
    env = template_env()
    cfg = {"bond": None, **cfg}   # no bond uplink (tests/unit/test_persist_bridge_bond.py has those)
    return {name.format(**cfg): env.get_template(template).render(cfg=cfg) for name, template in FILES[fmt].items()}


def bridge_uuid(cfg: dict) -> str:
    return to_uuid(f"openvif.vswitch bridge {cfg['bridge']}")


@pytest.mark.parametrize(("case", "fmt"), PAIRS)
def test_rendered_files_match_golden(case, fmt):
    rendered = render(fmt, (NM_CASES if fmt == "networkmanager" else CASES)[case])
    golden_dir = GOLDEN / case / fmt
    assert sorted(rendered) == sorted(str(p.relative_to(golden_dir)) for p in golden_dir.rglob("*") if p.is_file())
    for name, text in rendered.items():
        assert text == (golden_dir / name).read_text(), f"{fmt}/{name} for {case} differs from {golden_dir / name}"


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is missing (package {'network-manager' if tool == 'nmcli' else 'netplan.io'}; "
                    "scripts/bootstrap.sh test installs it)")
    return path


def parse_keyfile(text: str) -> dict[str, dict[str, str]]:
    """GKeyFile as NetworkManager writes it: [section], key=value."""
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        assert current is not None, line
        key, _eq, value = line.partition("=")
        current[key] = value
    return sections


def nm_normalised(text: str) -> dict[str, dict[str, str]]:
    """The keyfile after NetworkManager's parser, normaliser and verifier: what NetworkManager will use.

    ``nmcli --offline connection modify`` (setting the priority the file has) reads a keyfile on
    stdin and writes it back; it fails on a keyfile NetworkManager would not load (an unknown
    property, a value out of range).
    """
    argv = [need("nmcli"), "--offline", "connection", "modify", "connection.autoconnect-priority", "100"]
    proc = subprocess.run(argv, input=text, capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr
    return parse_keyfile(proc.stdout)


@pytest.mark.parametrize("case", [case for case, fmt in PAIRS if fmt == "networkmanager"])
def test_networkmanager_parses_the_keyfiles_as_meant(case):
    cfg = NM_CASES[case]
    files = render("networkmanager", cfg)
    bridge = nm_normalised(files[f"system-connections/openvif-{cfg['bridge']}.nmconnection"])
    port = nm_normalised(files[f"system-connections/openvif-{cfg['bridge']}-port-{cfg['uplink']}.nmconnection"])

    conn = bridge["connection"]
    assert (conn["type"], conn["interface-name"], conn["uuid"]) == ("bridge", cfg["bridge"], bridge_uuid(cfg))
    assert conn.get("autoconnect", "true") == ("true" if cfg["onboot"] else "false")
    assert bridge["bridge"].get("stp", "true") == ("true" if cfg["stp"] else "false")
    assert int(bridge["bridge"].get("forward-delay", 15)) == cfg["forward_delay"]
    ether = bridge.get("ethernet", {})
    assert ether.get("cloned-mac-address", "").lower() == (cfg["mac"] or "").lower()
    assert ether.get("mtu") == (str(cfg["mtu"]) if cfg["mtu"] else None)
    ipv4 = bridge["ipv4"]
    if cfg["bootproto"] == "dhcp":
        assert ipv4["method"] == "auto" and ipv4["dhcp-client-id"] == "mac" and "address1" not in ipv4
    else:
        address, _sep, gateway = ipv4["address1"].partition(",")
        assert ipv4["method"] == "manual"
        assert ipaddress.IPv4Interface(address) == ipaddress.IPv4Interface(f"{cfg['ip']}/{cfg['prefix']}")
        assert (gateway or ipv4.get("gateway")) == cfg["gateway"]
    assert [d for d in ipv4.get("dns", "").split(";") if d] == cfg["dns"]
    assert [d for d in ipv4.get("dns-search", "").split(";") if d] == cfg["dns_search"]
    ipv6 = bridge["ipv6"]
    assert ipv6["method"] == nm_ipv6_method(cfg)
    # NetworkManager's normaliser may fold the gateway into the first address ("address,gateway").
    entries = [ipv6[key].partition(",") for key in sorted(ipv6) if key.startswith("address")]
    assert [address for address, unused, gw in entries] == cfg["address6"]
    assert (ipv6.get("gateway") or next((gw for unused, sep, gw in entries if gw), None)) == cfg["gateway6"]
    if cfg["ipv6_autoconf"]:   # SLAAC keeps the address the kernel made from the MAC before the move
        assert ipv6["addr-gen-mode"] == "eui64"
    if cfg["dhcp6"]:           # the identity of the move's DHCPv6 client: DUID-LL, IAID from the MAC
        assert (ipv6["dhcp-duid"], ipv6["dhcp-iaid"]) == ("ll", "mac")

    pconn = port["connection"]
    assert (pconn["type"], pconn["interface-name"]) == ("ethernet", cfg["uplink"])
    assert (pconn["master"], pconn["slave-type"]) == (bridge_uuid(cfg), "bridge")
    assert "ipv4" not in port and "address1" not in str(port), "the uplink must not keep an address"
    assert port.get("ethernet", {}).get("mtu") == (str(cfg["mtu"]) if cfg["mtu"] else None)
    # Both win over a profile the installer made for the NIC.
    assert int(conn["autoconnect-priority"]) > 0 and int(pconn["autoconnect-priority"]) > 0


def nm_ipv6_method(cfg: dict) -> str:
    """What the keyfile must tell NetworkManager to do with IPv6, from the role's declaration. DHCPv6 is
    "auto" (DHCPv6 when the advertisement's M flag says so, routes from the advertisement), not "dhcp",
    which ignores advertisements and so would leave the host without an IPv6 default route."""
    if cfg["ipv6_autoconf"] or cfg["dhcp6"]:
        return "auto"
    if cfg["address6"] or cfg["gateway6"]:
        return "manual"
    # RAs refused and nothing declared: link-local only; nothing said at all: the kernel's own IPv6 kept.
    return "ignore" if cfg["ipv6_autoconf"] is None else "link-local"


def test_networkmanager_exemption_is_harmless_alone():
    """The drop-in lists a positive entry no device can match, so alone it unmanages nothing, and it
    marks only the bridge and its uplink managed."""
    cfg = CASES["static"]
    text = render("networkmanager", cfg)[f"conf.d/95-openvif-bridge-{cfg['bridge']}.conf"]
    specs = parse_keyfile(text)["keyfile"]["unmanaged-devices+"].split(";")
    positives = [spec for spec in specs if not spec.startswith("except:")]
    assert positives == ["interface-name:=openvif-matches-no-device"] and len(positives[0]) - 16 > 15
    assert sorted(specs[1:]) == ["except:interface-name:=eth0", "except:interface-name:=xenbr0"]
    device = parse_keyfile(text)["device-openvif-bridge-xenbr0"]   # managed at boot, these two only
    assert device == {"match-device": "interface-name:=xenbr0;interface-name:=eth0", "managed": "1",
                      "keep-configuration": "no"}


def netplan_generate(tmp_path: Path, files: dict[str, str], others: dict[str, str] | None = None) -> dict:
    netplan_dir = tmp_path / "etc" / "netplan"
    netplan_dir.mkdir(parents=True)
    for name, text in {**(others or {}), **files}.items():
        (netplan_dir / name).write_text(text)
        (netplan_dir / name).chmod(0o600)
    proc = subprocess.run([need("netplan"), "generate", "--root-dir", str(tmp_path)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = tmp_path / "run" / "systemd" / "network"
    return {p.name: parse_unit(p.read_text()) for p in sorted(out.iterdir()) if p.suffix in (".netdev", ".network")}


@pytest.mark.parametrize("case", [case for case, fmt in PAIRS if fmt == "netplan"])
def test_netplan_generate_accepts_it_and_networkd_gets_bridge_uplink_address(case, tmp_path):
    cfg = CASES[case]
    units = netplan_generate(tmp_path, render("netplan", cfg))
    bridge, uplink = cfg["bridge"], cfg["uplink"]
    netdev = units[f"10-netplan-{bridge}.netdev"]
    assert dict(netdev["NetDev"])["Kind"] == "bridge" and dict(netdev["NetDev"])["Name"] == bridge
    assert dict(netdev["NetDev"]).get("MACAddress", "").lower() == (cfg["mac"] or "").lower()
    assert dict(netdev["NetDev"]).get("MTUBytes") == (str(cfg["mtu"]) if cfg["mtu"] else None)
    assert dict(netdev["Bridge"])["STP"] == ("true" if cfg["stp"] else "false")
    assert float(dict(netdev["Bridge"])["ForwardDelaySec"]) == cfg["forward_delay"]
    port = units[f"10-netplan-{uplink}.network"]
    assert dict(port["Network"])["Bridge"] == bridge
    assert not [k for k, unused in port["Network"] if k in ("Address", "DHCP", "Gateway")], "uplink keeps no address"
    net = dict(units[f"10-netplan-{bridge}.network"]["Network"])
    if cfg["bootproto"] == "dhcp":
        assert net["DHCP"] == ("yes" if cfg["dhcp6"] else "ipv4")
        assert dict(units[f"10-netplan-{bridge}.network"]["DHCP"])["ClientIdentifier"] == "mac"
    else:
        network = units[f"10-netplan-{bridge}.network"]
        assert net.get("DHCP") == ("ipv6" if cfg["dhcp6"] else None)
        assert [v for k, v in network["Network"] if k == "Address" and ":" not in v] == [f"{cfg['ip']}/{cfg['prefix']}"]
        gateways = [v for k, v in network.get("Route", []) if k == "Gateway" and ":" not in v]
        assert gateways == ([cfg["gateway"]] if cfg["gateway"] else [])
    network = units[f"10-netplan-{bridge}.network"]
    addresses6 = [v for k, v in network["Network"] if k == "Address" and ":" in v]
    assert addresses6 == cfg["address6"]
    # parse_unit gathers every [Route] section's keys in one list
    gateways6 = [v for k, v in network.get("Route", []) if k == "Gateway" and ":" in v]
    assert gateways6 == ([cfg["gateway6"]] if cfg["gateway6"] else [])
    accept_ra = net.get("IPv6AcceptRA")
    assert accept_ra == (None if cfg["ipv6_autoconf"] is None else ("yes" if cfg["ipv6_autoconf"] else "no"))
    assert [v for k, v in units[f"10-netplan-{bridge}.network"]["Network"] if k == "DNS"] == cfg["dns"]
    assert net.get("Domains", "").split() == cfg["dns_search"]


def test_netplan_file_sorts_after_the_distributions_and_overrides_dhcp_on_the_uplink(tmp_path):
    """cloud-init's 50-cloud-init.yaml says dhcp4: true for the NIC; ours, read later, turns it off."""
    cfg = CASES["static"]
    others = {"50-cloud-init.yaml": f"network:\n  version: 2\n  ethernets:\n    {cfg['uplink']}:\n      dhcp4: true\n"}
    units = netplan_generate(tmp_path, render("netplan", cfg), others)
    port = dict(units[f"10-netplan-{cfg['uplink']}.network"]["Network"])
    assert "DHCP" not in port and port["Bridge"] == cfg["bridge"]
