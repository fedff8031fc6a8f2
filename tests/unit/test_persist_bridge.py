"""The bridge role's persistent files: golden files per format, plus a parse/round-trip check.

The templates are rendered with plain Jinja2 configured as Ansible's template module is
(trim_blocks, trailing newline kept), so what is compared here is what hosts receive; the
integration test renders them through the real role and compares with the same golden files.
"""
from __future__ import annotations

import ipaddress
import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest
from ansible.plugins.filter.core import to_uuid
from jinja2 import Environment, FileSystemLoader, StrictUndefined

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "roles" / "bridge" / "templates"
GOLDEN = Path(__file__).parent / "golden" / "bridge"
SEED = Path("/work/shared/seed/000_545235618a8f23c2.txt")

# The two examples of the source document (ifcfg-xenbr0 with DHCP and with a static address).
CASES: dict[str, dict] = {
    "dhcp": {"bridge": "xenbr0", "uplink": "eth0", "datapath": "kernel",
             "onboot": True, "stp": False, "forward_delay": 0,
             "mtu": 1500, "mac": "02:00:00:77:00:50", "bootproto": "dhcp", "ip": None, "prefix": None,
             "netmask": None, "gateway": None, "dns": [], "dns_search": []},
    "static": {"bridge": "xenbr0", "uplink": "eth0", "datapath": "kernel",
               "onboot": True, "stp": False, "forward_delay": 0,
               "mtu": 1500, "mac": "02:00:00:77:00:50", "bootproto": "static", "ip": "172.16.0.102",
               "prefix": 16, "netmask": "255.255.0.0", "gateway": "172.16.0.1",
               "dns": ["68.94.156.1", "68.94.157.1"], "dns_search": []},
    # What the integration test's lab host gets (tests/integration/test_bridge_role.py).
    "lab_static": {"bridge": "xenbr0", "uplink": "eth0", "datapath": "kernel",
                   "onboot": True, "stp": False, "forward_delay": 0,
                   "mtu": 1500, "mac": "02:00:00:77:00:50", "bootproto": "static", "ip": "10.77.0.50",
                   "prefix": 24, "netmask": "255.255.255.0", "gateway": "10.77.0.1", "dns": ["10.77.0.1"],
                   "dns_search": ["lab.example"]},
    "stp_search_nomac": {"bridge": "xenbr1", "uplink": "eno2", "datapath": "kernel", "onboot": False, "stp": True,
                         "forward_delay": 4.5, "mtu": 9000, "mac": None, "bootproto": "static",
                         "ip": "192.0.2.10", "prefix": 24, "netmask": "255.255.255.0", "gateway": None,
                         "dns": ["192.0.2.53"], "dns_search": ["lab.example", "example"]},
}
NO_IPV6 = {"address6": [], "gateway6": None, "ipv6_autoconf": None, "dhcp6": False}
for _case in CASES.values():
    _case.update(NO_IPV6)
# Dual stack as tests/integration/test_bridge_role_ipv6.py declares it: two static IPv6 addresses, a
# global gateway, router advertisements refused; and a SLAAC host with IPv4 by DHCP.
CASES["static6"] = dict(CASES["lab_static"], dns=[], dns_search=[], address6=["2001:db8:77::50/64", "fd00:77::50/64"],
                        gateway6="2001:db8:77::1", ipv6_autoconf=False)
CASES["slaac"] = dict(CASES["dhcp"], ipv6_autoconf=True)
CASES["linklocal_gw6"] = dict(CASES["static"], address6=["2001:db8::102/64"], gateway6="fe80::1")
# DHCPv6 (tests/integration/test_bridge_role_dhcp6.py): beside DHCPv4, with the router's advertisements
# accepted (the default route comes from them); and beside a static IPv4 address and a static IPv6 one.
CASES["dhcp6"] = dict(CASES["dhcp"], dhcp6=True, ipv6_autoconf=True)
CASES["static_dhcp6"] = dict(CASES["lab_static"], dhcp6=True, address6=["fd00:77::50/64"])
# datapath: userspace, where the IP lives on vswitchd's internal port: networkd only.
CASES["userspace_dhcp"] = dict(CASES["dhcp"], datapath="userspace")
FORMATS = {"userspace_dhcp": ["networkd"]}

FILES = {
    "ifcfg": {"ifcfg-{bridge}": "ifcfg-bridge.j2", "ifcfg-{uplink}": "ifcfg-uplink.j2"},
    "networkd": {"05-openvif-{bridge}.netdev": "networkd-bridge.netdev.j2",
                 "05-openvif-{bridge}.network": "networkd-bridge.network.j2",
                 "05-openvif-{uplink}.network": "networkd-uplink.network.j2"},
    "ifupdown": {"interfaces.d/{bridge}": "ifupdown-bridge.j2"},
}


def template_env() -> Environment:
    """The role's templates as Ansible renders them: its template options, and the filters they use."""
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), trim_blocks=True, keep_trailing_newline=True,
                      undefined=StrictUndefined)
    env.filters["bool"] = lambda value: value if isinstance(value, bool) else str(value).lower() in (
        "1", "true", "yes", "on")
    env.filters["to_uuid"] = to_uuid
    env.filters["to_json"] = json.dumps
    return env


def render(fmt: str, cfg: dict) -> dict[str, str]:
    files = {name: template for name, template in FILES[fmt].items()
             if not (cfg["datapath"] == "userspace" and name.endswith(".netdev"))}  # vswitchd's bridge
    env = template_env()
    cfg = {"bond": None, **cfg}   # no bond uplink (tests/unit/test_persist_bridge_bond.py has those)
    return {name.format(**cfg): env.get_template(template).render(cfg=cfg) for name, template in files.items()}


PAIRS = [(case, fmt) for case in sorted(CASES) for fmt in FORMATS.get(case, sorted(FILES))]


@pytest.mark.parametrize(("case", "fmt"), PAIRS)
def test_rendered_files_match_golden(case, fmt):
    rendered = render(fmt, CASES[case])
    golden_dir = GOLDEN / case / fmt
    assert sorted(rendered) == sorted(str(p.relative_to(golden_dir)) for p in golden_dir.rglob("*") if p.is_file())
    for name, text in rendered.items():
        golden = GOLDEN / case / fmt / name
        assert golden.exists(), f"missing golden file {golden}"
        assert text == golden.read_text(), f"{fmt}/{name} for {case} differs from {golden}"


# ---- parsers: each reads a file the way its consumer does and gives back the configuration ----

def parse_ifcfg(text: str) -> dict[str, str]:
    """KEY=value lines, shell-quoted, as initscripts/NetworkManager's ifcfg-rh read them."""
    values = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, _eq, raw = line.partition("=")
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*", key), f"not a shell variable assignment: {line!r}"
        words = shlex.split(raw)
        assert len(words) <= 1, f"unquoted spaces in {line!r}"
        values[key] = words[0] if words else ""
    return values


def parse_unit(text: str) -> dict[str, list[tuple[str, str]]]:
    """systemd's INI dialect: [Section], Key=Value, repeated keys allowed, '#'/';' comments."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped[0] in "#;":
            continue
        if stripped.startswith("["):
            assert stripped.endswith("]"), line
            current = sections.setdefault(stripped[1:-1], [])
            continue
        assert current is not None, f"key outside a section: {line!r}"
        key, sep, value = stripped.partition("=")
        assert sep and re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", key), f"bad line {line!r}"
        current.append((key, value))
    return sections


def parse_interfaces(text: str) -> dict[str, dict]:
    """ifupdown's interfaces(5): 'auto' lines and 'iface NAME inet METHOD' stanzas with options."""
    stanzas: dict[str, dict] = {}
    auto: set[str] = set()
    current = None
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        words = line.split()
        if words[0] == "auto":
            auto.update(words[1:])
            current = None
        elif words[0] == "iface" and words[2] == "inet":
            assert len(words) == 4, line
            current = stanzas.setdefault(words[1], {})
            current.update(method=words[3], options={})
            current = stanzas[words[1]]
        elif words[0] == "iface" and words[2] == "inet6":
            assert len(words) == 4, line
            current = {"method": words[3], "options": {}}
            stanzas.setdefault(words[1], {"method": None, "options": {}}).setdefault("inet6", []).append(current)
        else:
            assert current is not None and line[0].isspace(), f"option outside a stanza: {line!r}"
            current["options"][words[0]] = " ".join(words[1:])
    for name, stanza in stanzas.items():
        stanza["auto"] = name in auto
    return stanzas


def cfg_from_ifcfg(files: dict[str, str], cfg: dict) -> dict:
    br = parse_ifcfg(files[f"ifcfg-{cfg['bridge']}"])
    up = parse_ifcfg(files[f"ifcfg-{cfg['uplink']}"])
    assert br["TYPE"] == "Bridge" and up["BRIDGE"] == br["DEVICE"] and up["BOOTPROTO"] == "none"
    assert "IPADDR" not in up, "the uplink must not keep an address"
    static = br["BOOTPROTO"] == "none"
    netmask = br.get("NETMASK")
    return {
        "bridge": br["DEVICE"], "uplink": br["PIFDEV"], "datapath": "kernel", "onboot": br["ONBOOT"] == "yes",
        "stp": br["STP"] == "on", "forward_delay": float(br["DELAY"]),
        "mtu": int(br["MTU"]) if "MTU" in br else None, "mac": br.get("MACADDR"),
        "bootproto": "static" if static else br["BOOTPROTO"], "ip": br.get("IPADDR"),
        "prefix": ipaddress.IPv4Network(f"0.0.0.0/{netmask}").prefixlen if netmask else None,
        "netmask": netmask, "gateway": br.get("GATEWAY"),
        "dns": [br[k] for k in sorted((k for k in br if re.fullmatch(r"DNS\d+", k)), key=lambda k: int(k[3:]))],
        "dns_search": br["DOMAIN"].split() if "DOMAIN" in br else [],
        **ipv6_from_ifcfg(br, cfg["bridge"]),
    }


def ipv6_from_ifcfg(br: dict[str, str], bridge: str) -> dict:
    if br.get("IPV6INIT") != "yes":
        assert not [k for k in br if k.startswith("IPV6")], br
        return dict(NO_IPV6)
    gateway = br.get("IPV6_DEFAULTGW")
    if gateway and gateway.startswith("fe80"):
        gateway, _pct, zone = gateway.partition("%")
        assert zone == bridge, "a link-local gateway needs its interface"
    return {"address6": ([br["IPV6ADDR"]] if "IPV6ADDR" in br else []) + br.get("IPV6ADDR_SECONDARIES", "").split(),
            "gateway6": gateway,
            "ipv6_autoconf": {"yes": True, "no": False, None: None}[br.get("IPV6_AUTOCONF")],
            "dhcp6": {"yes": True, None: False}[br.get("DHCPV6C")]}


def cfg_from_networkd(files: dict[str, str], cfg: dict) -> dict:
    network = parse_unit(files[f"05-openvif-{cfg['bridge']}.network"])
    uplink = parse_unit(files[f"05-openvif-{cfg['uplink']}.network"])
    netdev_name = f"05-openvif-{cfg['bridge']}.netdev"
    userspace = netdev_name not in files  # vswitchd owns the bridge: only its internal port is addressed
    netdev = {"NetDev": [("Name", dict(network["Match"])["Name"]), ("Kind", "bridge")], "Bridge": []} \
        if userspace else parse_unit(files[netdev_name])
    nd, br = dict(netdev["NetDev"]), dict(netdev["Bridge"])
    net = network["Network"]
    assert nd["Kind"] == "bridge" and dict(network["Match"])["Name"] == nd["Name"]
    up = dict(uplink["Network"])
    assert up.get("Bridge") == (None if userspace else nd["Name"])
    assert not [k for k in up if k in ("Address", "DHCP")], "the uplink must not keep an address"
    if userspace:
        assert up["LinkLocalAddressing"] == "no"
    v4 = [v for k, v in net if k == "Address" and ":" not in v]
    assert len(v4) <= 1
    address = v4[0] if v4 else None
    iface = ipaddress.IPv4Interface(address) if address else None
    gateways = [v for k, v in net if k == "Gateway"]
    accept_ra = dict(net).get("IPv6AcceptRA")
    dhcp_says = dict(net).get("DHCP")
    dhcp, dhcp6 = dhcp_says in ("ipv4", "yes"), dhcp_says in ("ipv6", "yes")
    if dhcp:
        assert dict(network["DHCPv4"])["ClientIdentifier"] == "mac"
    if dhcp6:   # the identity of the move's client: DUID-LL of the MAC, IAID its last four octets
        dhcpv6 = dict(network["DHCPv6"])
        assert dhcpv6["DUIDType"] == "link-layer"
        assert dhcpv6.get("IAID") == (str(int("".join(cfg["mac"].split(":")[2:]), 16)) if cfg["mac"] else None)
    else:
        assert "DHCPv6" not in network
    mtu = nd.get("MTUBytes") or dict(uplink.get("Link", [])).get("MTUBytes")
    return {
        "bridge": nd["Name"], "uplink": dict(uplink["Match"])["Name"],
        "datapath": "userspace" if userspace else "kernel", "onboot": cfg["onboot"],
        "stp": cfg["stp"] if userspace else br["STP"] == "yes",
        "forward_delay": float(cfg["forward_delay"]) if userspace else float(br["ForwardDelaySec"]),
        "mtu": int(mtu) if mtu else None, "mac": cfg["mac"] if userspace else nd.get("MACAddress"),
        "bootproto": "dhcp" if dhcp else "static", "ip": str(iface.ip) if iface else None,
        "prefix": iface.network.prefixlen if iface else None, "netmask": str(iface.netmask) if iface else None,
        "gateway": next((g for g in gateways if ":" not in g), None), "dns": [v for k, v in net if k == "DNS"],
        "dns_search": dict(net).get("Domains", "").split(),
        "address6": [v for k, v in net if k == "Address" and ":" in v],
        "gateway6": next((g for g in gateways if ":" in g), None),
        "ipv6_autoconf": {"yes": True, "no": False, None: None}[accept_ra], "dhcp6": dhcp6,
    }


def cfg_from_ifupdown(files: dict[str, str], cfg: dict) -> dict:
    stanzas = parse_interfaces(files[f"interfaces.d/{cfg['bridge']}"])
    (bridge,) = [name for name, s in stanzas.items() if "bridge_ports" in s["options"]]
    br = stanzas[bridge]
    opts = br["options"]
    (uplink,) = opts["bridge_ports"].split()
    assert stanzas[uplink]["method"] == "manual" and not stanzas[uplink]["options"]
    netmask = opts.get("netmask")
    return {
        "bridge": bridge, "uplink": uplink, "datapath": "kernel", "onboot": br["auto"],
        "stp": opts["bridge_stp"] == "on",
        "forward_delay": float(opts["bridge_fd"]), "mtu": int(opts["mtu"]) if "mtu" in opts else None,
        "mac": opts["hwaddress"].split()[1] if "hwaddress" in opts else None,
        "bootproto": br["method"], "ip": opts.get("address"),
        "prefix": ipaddress.IPv4Network(f"0.0.0.0/{netmask}").prefixlen if netmask else None,
        "netmask": netmask, "gateway": opts.get("gateway"), "dns": opts.get("dns-nameservers", "").split(),
        "dns_search": opts.get("dns-search", "").split(),
        **ipv6_from_ifupdown(br.get("inet6", [])),
    }


def ipv6_from_ifupdown(stanzas: list[dict]) -> dict:
    """``iface X inet6 static|auto|dhcp``: the first carries gateway and RA switches, each adds one address.
    After ``inet6 dhcp`` (whose only option is autoconf) every static stanza adds an address, the first
    with the gateway."""
    if not stanzas:
        return dict(NO_IPV6)
    first = stanzas[0]["options"]
    if stanzas[0]["method"] == "dhcp":
        assert set(first) <= {"autoconf"}, first
        static = [s["options"] for s in stanzas[1:]]
        assert all(s["method"] == "static" for s in stanzas[1:])
        autoconf = first.get("autoconf")
        return {"address6": [s["address"] for s in static], "gateway6": static[0].get("gateway") if static else None,
                "ipv6_autoconf": None if autoconf is None else autoconf == "1", "dhcp6": True}
    if stanzas[0]["method"] == "auto":
        assert len(stanzas) == 1 and not first
        return {"address6": [], "gateway6": None, "ipv6_autoconf": True, "dhcp6": False}
    assert all(s["method"] == "static" for s in stanzas)
    assert all(list(s["options"]) == ["address"] for s in stanzas[1:]), "later stanzas only add an address"
    assert first.get("accept_ra", first.get("autoconf")) == first.get("autoconf", first.get("accept_ra"))
    autoconf = first.get("autoconf")
    return {"address6": [s["options"]["address"] for s in stanzas], "gateway6": first.get("gateway"),
            "ipv6_autoconf": None if autoconf is None else autoconf == "1", "dhcp6": False}


PARSERS = {"ifcfg": cfg_from_ifcfg, "networkd": cfg_from_networkd, "ifupdown": cfg_from_ifupdown}


@pytest.mark.parametrize(("case", "fmt"), PAIRS)
def test_round_trip(case, fmt):
    cfg = CASES[case]
    parsed = PARSERS[fmt](render(fmt, cfg), cfg)
    expected = dict(cfg, forward_delay=float(cfg["forward_delay"]))
    assert parsed == expected


@pytest.mark.parametrize("case", ["dhcp", "static"])
def test_ifcfg_says_what_the_source_document_says(case):
    """The seed's ifcfg-xenbr0 examples: every key they set, ours sets to the same value.

    Except ONBOOT (the document's XenServer brings xenbr0 up itself, ONBOOT=no; we let the
    host's boot bring it up, unless onboot is false) and XEMANAGED (XenServer's own marker).
    """
    text = SEED.read_text()
    blocks = re.findall(r"```\n(XEMANAGED=yes.*?)```", text, re.S)
    seed = parse_ifcfg("\n".join(line.strip() for line in blocks[0 if case == "dhcp" else 1].splitlines()))
    ours = parse_ifcfg(render("ifcfg", dict(CASES[case], onboot=False))["ifcfg-xenbr0"])
    seed.pop("XEMANAGED")
    assert seed["BOOTPROTO"] == ("dhcp" if case == "dhcp" else "none")
    assert {k: ours.get(k) for k in seed} == seed


@pytest.mark.parametrize("case", sorted(CASES))
def test_ifcfg_is_valid_shell(case):
    """initscripts source ifcfg files: bash must read every value back unchanged."""
    for name, text in render("ifcfg", CASES[case]).items():
        expected = parse_ifcfg(text)
        script = text + "\n" + "\n".join(f'printf "%s=%s\\n" {k} "${k}"' for k in expected)
        out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=10, check=True)
        assert dict(line.split("=", 1) for line in out.stdout.splitlines()) == expected, name
