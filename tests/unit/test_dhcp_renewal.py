"""The collection's DHCP client's wire format and timers: RENEWING/REBINDING/RELEASE messages carry the
address in ciaddr without the broadcast flag, T1/T2 come from the server or RFC 2131's defaults, and
the lease survives a round trip through its state file."""
from __future__ import annotations

import socket
import struct

from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.hostnet import dhcp, lease_keeper

MAC = "02:00:00:77:00:50"


def _fields(message: bytes) -> tuple[int, str, dict]:
    flags = struct.unpack("!H", message[10:12])[0]
    ciaddr = socket.inet_ntoa(message[12:16])
    options, i = {}, 240
    while message[i] != 255:
        options[message[i]] = message[i + 2:i + 2 + message[i + 1]]
        i += 2 + message[i + 1]
    return flags, ciaddr, options


def test_renewal_request_names_the_address_in_ciaddr_and_asks_for_unicast():
    flags, ciaddr, options = _fields(dhcp.build_message(dhcp.REQUEST, 9, MAC, ciaddr="10.77.0.50"))
    assert (flags, ciaddr) == (0, "10.77.0.50")
    assert options[dhcp.OPT_TYPE] == bytes([dhcp.REQUEST])
    assert dhcp.OPT_REQUESTED_IP not in options and dhcp.OPT_SERVER not in options  # RFC 2131 4.3.2


def test_init_reboot_and_release():
    flags, ciaddr, options = _fields(dhcp.build_message(dhcp.REQUEST, 9, MAC, requested="10.77.0.50"))
    assert (flags, ciaddr) == (0x8000, "0.0.0.0") and options[dhcp.OPT_REQUESTED_IP] == socket.inet_aton("10.77.0.50")
    flags, ciaddr, options = _fields(dhcp.build_message(dhcp.RELEASE, 9, MAC, ciaddr="10.77.0.50", server="10.77.0.1"))
    assert ciaddr == "10.77.0.50" and options[dhcp.OPT_TYPE] == bytes([dhcp.RELEASE])
    assert options[dhcp.OPT_SERVER] == socket.inet_aton("10.77.0.1")


def test_timers_default_to_half_and_seven_eighths_or_follow_the_server():
    lease = dhcp.Lease(address="10.77.0.50", prefixlen=24, server="10.77.0.1", lease_time=120, obtained=1000.0)
    assert (lease.t1, lease.t2, lease.expires) == (1060.0, 1105.0, 1120.0)
    lease.renew_after, lease.rebind_after = 10, 20
    assert (lease.t1, lease.t2) == (1010.0, 1020.0)


def test_server_timers_are_read_from_options_58_and_59():
    opts = {dhcp.OPT_TYPE: bytes([dhcp.ACK]), dhcp.OPT_LEASE: struct.pack("!I", 120),
            dhcp.OPT_T1: struct.pack("!I", 50), dhcp.OPT_T2: struct.pack("!I", 100),
            dhcp.OPT_SERVER: socket.inet_aton("10.77.0.1"), dhcp.OPT_MASK: socket.inet_aton("255.255.255.0")}
    lease = dhcp.lease_from({"yiaddr": "10.77.0.50", "options": opts})
    assert (lease.renew_after, lease.rebind_after, lease.lease_time, lease.prefixlen) == (50, 100, 120, 24)
    assert lease.obtained > 0


def test_the_lease_survives_its_state_file(tmp_path):
    path = lease_keeper.lease_path(str(tmp_path / "dhcp"), "xenbr0")
    lease = dhcp.Lease(address="10.77.0.50", prefixlen=24, server="10.77.0.1", lease_time=120,
                       routers=["10.77.0.1"], obtained=1000.0, renew_after=60)
    lease_keeper.save(path, lease)
    assert lease_keeper.load(path) == lease
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("{not json")
    assert lease_keeper.load(path) is None  # a damaged file is no lease: the keeper asks again
    lease_keeper.save(path, None)
    assert lease_keeper.load(path) is None
