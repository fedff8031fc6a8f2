"""hostnet's pure parts: the spec's validation, the DHCP wire format, resolv.conf editing."""
from __future__ import annotations

import socket
import struct

import pytest
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.errors import ValidationError
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.hostnet import clients, dhcp, netops, snapshot
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.hostnet.spec import HostIpSpec

BASE = {"bridge": "xenbr0", "uplink": "eth0"}


def test_static_with_netmask_is_normalised_like_ifcfg():
    spec = HostIpSpec.from_params({**BASE, "bootproto": "static", "address": "172.16.0.102",
                                   "netmask": "255.255.0.0", "gateway": "172.16.0.1",
                                   "dns": ["68.94.156.1", "68.94.157.1"]})
    assert spec.addressing() == {"bootproto": "static", "address": "172.16.0.102/16", "ip": "172.16.0.102",
                                 "prefix": 16, "netmask": "255.255.0.0", "gateway": "172.16.0.1",
                                 "dns": ["68.94.156.1", "68.94.157.1"], "dns_search": [],
                                 "address6": [], "gateway6": None, "ipv6_autoconf": None, "dhcp6": None}
    assert HostIpSpec.from_dict(spec.to_dict()) == spec


def test_defaults_dhcp_no_stp_zero_delay():
    spec = HostIpSpec.from_params(BASE)
    assert (spec.bootproto, spec.stp, spec.forward_delay, spec.move_mac) == ("dhcp", False, 0.0, True)
    assert HostIpSpec.from_params({**BASE, "stp": True}).forward_delay == 15.0


@pytest.mark.parametrize(("params", "field", "words"), [
    ({"bootproto": "static"}, "address", "required"),
    ({"bootproto": "static", "address": "10.0.0.5"}, "address", "prefix"),
    ({"bootproto": "static", "address": "10.0.0.5/24", "netmask": "255.0.0.0"}, "netmask", "twice"),
    ({"bootproto": "static", "address": "10.0.0.0/24"}, "address", "network address"),
    ({"bootproto": "static", "address": "10.0.0.255/24"}, "address", "broadcast"),
    ({"bootproto": "static", "address": "10.0.0.5/24", "gateway": "10.0.1.1"}, "gateway", "on-link"),
    ({"bootproto": "static", "address": "10.0.0.5/24", "gateway": "10.0.0.5"}, "gateway", "own address"),
    ({"bootproto": "dhcp", "address": "10.0.0.5/24"}, "address", "only used with bootproto: static"),
    ({"dns": ["8.8.8.8", "dns.example"]}, "dns[1]", "not an IPv4"),
    ({"uplink": "xenbr0"}, "uplink", "bridge itself"),
    ({"stp": True, "forward_delay": 1}, "forward_delay", "too short"),
    ({"bootproto": "bootp"}, "bootproto", "must be one of"),
    ({"rollback_timeout": 1}, "rollback_timeout", "out of range"),
    ({"verify_timeout": 0}, "verify_timeout", "out of range"),
])
def test_bad_input_names_field_and_reason(params, field, words):
    with pytest.raises(ValidationError) as err:
        HostIpSpec.from_params({**BASE, **params})
    assert err.value.field == field and words in err.value.message


def test_static_interface_is_a_real_error_when_the_spec_has_no_address():
    """The apply and verify steps ask for the static address this way; an assert there vanished under -O."""
    assert str(HostIpSpec.from_params({**BASE, "bootproto": "static", "address": "10.0.0.5/24"})
               .static_interface()) == "10.0.0.5/24"
    with pytest.raises(ValidationError) as err:
        HostIpSpec(bridge="xenbr0", uplink="eth0", bootproto="static").static_interface()
    assert err.value.field == "address" and "required with bootproto: static" in err.value.message


def _reply(kind: int, xid: int, mac: str, yiaddr: str) -> bytes:
    chaddr = bytes(int(p, 16) for p in mac.split(":")) + b"\x00" * 10
    header = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 2, 1, 6, 0, xid, 0, 0, b"\0" * 4,
                         socket.inet_aton(yiaddr), b"\0" * 4, b"\0" * 4, chaddr, b"", b"")
    opts = [(53, bytes([kind])), (1, socket.inet_aton("255.255.254.0")), (3, socket.inet_aton("10.1.0.1")),
            (6, socket.inet_aton("10.1.0.2") + socket.inet_aton("10.1.0.3")), (51, struct.pack("!I", 600)),
            (54, socket.inet_aton("10.1.0.1")), (15, b"lab.example")]
    return header + dhcp.MAGIC + b"".join(bytes([c, len(v)]) + v for c, v in opts) + b"\xff"


def test_dhcp_request_carries_type_requested_ip_server_and_broadcast_flag():
    msg = dhcp.build_message(dhcp.REQUEST, 0x1234, "02:00:00:77:00:50", requested="10.1.0.9", server="10.1.0.1")
    assert msg[0] == 1 and struct.unpack("!I", msg[4:8])[0] == 0x1234
    assert struct.unpack("!H", msg[10:12])[0] == 0x8000          # replies must be broadcast: we have no IP yet
    assert msg[28:34] == bytes.fromhex("020000770050") and msg[236:240] == dhcp.MAGIC
    assert b"\x35\x01\x03" in msg[240:]                           # DHCPREQUEST
    assert b"\x32\x04" + socket.inet_aton("10.1.0.9") in msg[240:]
    assert b"\x36\x04" + socket.inet_aton("10.1.0.1") in msg[240:]


def test_dhcp_ack_becomes_a_lease():
    parsed = dhcp.parse_message(_reply(dhcp.ACK, 7, "02:00:00:77:00:50", "10.1.0.9"))
    assert parsed["xid"] == 7 and parsed["chaddr"] == bytes.fromhex("020000770050")
    lease = dhcp.lease_from(parsed)
    assert (lease.address, lease.prefixlen, lease.lease_time) == ("10.1.0.9", 23, 600)
    assert lease.routers == ["10.1.0.1"] and lease.dns == ["10.1.0.2", "10.1.0.3"]
    assert lease.server == "10.1.0.1" and lease.domain == "lab.example"


def test_dhcp_ignores_what_is_not_a_bootreply():
    request = dhcp.build_message(dhcp.DISCOVER, 7, "02:00:00:77:00:50")
    assert dhcp.parse_message(request) is None                    # op 1: our own broadcast, looped back
    assert dhcp.parse_message(b"\x02" * 100) is None


def test_resolv_conf_keeps_other_lines():
    old = "# local\nsearch corp.example\nnameserver 192.0.2.53\noptions rotate\n"
    assert netops.resolv_conf_text(old, ["10.0.0.1"], []) == \
        "# local\nsearch corp.example\noptions rotate\nnameserver 10.0.0.1\n"
    assert netops.resolv_conf_text(old, ["10.0.0.1", "10.0.0.2"], ["lab.example"]) == \
        "# local\noptions rotate\nsearch lab.example\nnameserver 10.0.0.1\nnameserver 10.0.0.2\n"
    assert snapshot.nameservers(netops.resolv_conf_text(None, ["10.0.0.1"], [])) == ["10.0.0.1"]


def test_atomic_write_and_removal(tmp_path):
    path = tmp_path / "resolv.conf"
    netops.write_file_atomic(str(path), "nameserver 10.0.0.1\n")
    assert path.read_text() == "nameserver 10.0.0.1\n" and oct(path.stat().st_mode & 0o777) == "0o644"
    netops.write_file_atomic(str(path), None)                     # the snapshot had no file: remove it
    assert not path.exists() and list(tmp_path.iterdir()) == []


def test_describe_says_where_the_ip_is():
    state = {"uplink": {"name": "eth0", "addresses": [{"address": "10.0.0.5", "prefixlen": 24}]}, "bridge": None,
             "routes": [{"dst": "0.0.0.0", "dst_len": 0, "gateway": "10.0.0.1", "dev": "eth0"}]}
    assert snapshot.describe(state) == "eth0 has 10.0.0.5/24; default via 10.0.0.1 dev eth0; no bridge"


def test_dhcp_client_command_is_rehomed_to_the_bridge():
    argv = ["/sbin/dhclient", "-4", "-v", "-i", "-pf", "/run/dhclient.eth0.pid", "-lf",
            "/var/lib/dhcp/dhclient.eth0.leases", "-I", "-df", "/var/lib/dhcp/dhclient6.eth0.leases", "eth0"]
    assert clients.rehome(argv, "eth0", "xenbr0") == [
        "/sbin/dhclient", "-4", "-v", "-i", "-pf", "/run/dhclient.xenbr0.pid", "-lf",
        "/var/lib/dhcp/dhclient.xenbr0.leases", "-I", "-df", "/var/lib/dhcp/dhclient6.xenbr0.leases", "xenbr0"]
    assert clients.rehome(["udhcpc", "-i", "eth0", "-p", "/run/udhcpc-eth0.pid"], "eth0", "xenbr0") == \
        ["udhcpc", "-i", "xenbr0", "-p", "/run/udhcpc-xenbr0.pid"]
    assert clients.rehome(["dhclient", "eth01"], "eth0", "xenbr0") == ["dhclient", "eth01"]


def test_a_client_typed_by_name_is_found_in_the_sbin_directories_to_run_again(monkeypatch, tmp_path):
    """/proc shows `dhclient` as typed; execv needs a path, and the module's PATH may lack /sbin."""
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(clients, "SBIN_PATH", (str(tmp_path / "sbin"),))
    (tmp_path / "sbin").mkdir()
    (tmp_path / "sbin" / "udhcpc").write_text("#!/bin/sh\n")
    (tmp_path / "sbin" / "udhcpc").chmod(0o755)
    assert clients.executable("udhcpc") == str(tmp_path / "sbin" / "udhcpc")
    assert clients.executable("/sbin/dhclient") == "/sbin/dhclient"     # a path is taken as it is
    assert clients.executable("pump") == "pump"                         # nowhere: execv then fails as before
