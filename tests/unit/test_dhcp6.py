"""The collection's DHCPv6 client (RFC 8415), frame by frame: what each client message carries, byte for
byte where the RFC fixes it; server messages written out by hand, as a server sends them, parsed into
leases (T1/T2 from the server or the client's defaults, lifetimes, status codes), refused when they
grant nothing; and the lease's round trip through the keeper's state file."""
from __future__ import annotations

import struct

import pytest
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.hostnet import (
    clients,
    dhcp6,
    lease_keeper,
    lease_keeper6,
)

MAC = "02:00:00:77:00:50"
DUID = bytes.fromhex("00030001020000770050")            # DUID-LL, Ethernet, the MAC
SERVER_DUID = bytes.fromhex("0001000132a43c117e695714c944")
IAID = 0x00770050                                         # the MAC's last four octets
WHO = dhcp6.Identity.of_mac(MAC)
ADDRESS = "2001:db8:77::199"
ADDRESS_BYTES = bytes.fromhex("20010db8007700000000000000000199")


def opt(code: int, value: bytes) -> bytes:
    return struct.pack("!HH", code, len(value)) + value


def options(message: bytes) -> dict[int, bytes]:
    out, i = {}, 4
    while i < len(message):
        code, length = struct.unpack("!HH", message[i:i + 4])
        out[code] = message[i + 4:i + 4 + length]
        i += 4 + length
    assert i == len(message), "options run past the message"
    return out


def server_message(kind: int, xid: int, t1: int = 50, t2: int = 80, preferred: int = 100, valid: int = 120,
                   ia_status: bytes = b"", extra: bytes = b"", client: bytes = DUID) -> bytes:
    iaaddr = opt(5, ADDRESS_BYTES + struct.pack("!II", preferred, valid))
    ia = opt(3, struct.pack("!III", IAID, t1, t2) + iaaddr + ia_status)
    return struct.pack("!I", kind << 24 | xid) + opt(1, client) + opt(2, SERVER_DUID) + ia + extra


def test_identity_is_the_macs_duid_ll_and_iaid():
    assert dhcp6.duid(MAC) == DUID
    assert dhcp6.iaid(MAC) == IAID
    assert WHO == dhcp6.Identity(DUID, IAID) == dhcp6.Identity.from_dict(WHO.to_dict())


def test_another_identity_is_what_every_message_names():
    """A DUID-LLT (as dhclient makes) and another IAID: the Client Identifier and the IA_NA carry them."""
    llt = bytes.fromhex("000100012f3a1b2c020000770050")
    got = options(dhcp6.build_message(dhcp6.SOLICIT, 1, dhcp6.Identity(llt, 0x1234)))
    assert got[1] == llt and got[3][:4] == struct.pack("!I", 0x1234)


def test_solicit_frame():
    message = dhcp6.build_message(dhcp6.SOLICIT, 0xABCDEF, WHO, elapsed=1.5, addresses=[(ADDRESS, 0, 0)],
                                  rapid_commit=True)
    assert message[:4] == b"\x01\xab\xcd\xef"                 # msg-type 1, 24-bit transaction id
    got = options(message)
    assert got[1] == DUID and 2 not in got                    # a Solicit names no server
    assert got[8] == struct.pack("!H", 150)                   # elapsed time in hundredths of a second
    assert got[3] == struct.pack("!III", IAID, 0, 0) + opt(5, ADDRESS_BYTES + bytes(8))  # hint, lifetimes 0
    assert got[6] == struct.pack("!HHH", 23, 24, 82)          # DNS, domains, and SOL_MAX_RT (18.2.1)
    assert got[14] == b""                                     # Rapid Commit: empty


def test_request_renew_rebind_release_frames():
    request = options(dhcp6.build_message(dhcp6.REQUEST, 7, WHO, server_id=SERVER_DUID,
                                          addresses=[(ADDRESS, 0, 0)]))
    assert request[2] == SERVER_DUID and 14 not in request and request[6] == struct.pack("!HH", 23, 24)
    renew = dhcp6.build_message(dhcp6.RENEW, 7, WHO, server_id=SERVER_DUID, addresses=[(ADDRESS, 0, 0)])
    assert renew[0] == 5 and options(renew)[2] == SERVER_DUID
    rebind = dhcp6.build_message(dhcp6.REBIND, 7, WHO, addresses=[(ADDRESS, 0, 0)])
    assert rebind[0] == 6 and 2 not in options(rebind)         # any server may extend it
    release = options(dhcp6.build_message(dhcp6.RELEASE, 7, WHO, server_id=SERVER_DUID,
                                          addresses=[(ADDRESS, 0, 0)]))
    assert 6 not in release and release[3][12:] == opt(5, ADDRESS_BYTES + bytes(8))
    assert options(dhcp6.build_message(dhcp6.RENEW, 7, WHO, elapsed=10000))[8] == b"\xff\xff"  # saturates
    with pytest.raises(ValueError):
        dhcp6.build_message(dhcp6.SOLICIT, 1 << 24, WHO)


def test_advertise_and_reply_parse_into_a_lease():
    dns = opt(23, bytes.fromhex("20010db8007700000000000000000001"))
    domains = opt(24, b"\x03lab\x07example\x00")
    advertise = dhcp6.parse_message(server_message(2, 0x010203, extra=opt(7, b"\x0a") + dns + domains))
    assert advertise["type"] == 2 and advertise["xid"] == 0x010203 and advertise["preference"] == 10
    assert advertise["server_id"] == SERVER_DUID and advertise["client_id"] == DUID
    assert advertise["ias"] == [{"iaid": IAID, "t1": 50, "t2": 80, "status": (0, ""),
                                 "addresses": [(ADDRESS, 100, 120)]}]
    assert advertise["dns"] == ["2001:db8:77::1"] and advertise["domains"] == ["lab.example"]
    assert not advertise["rapid_commit"]
    lease = dhcp6.lease_from(dhcp6.parse_message(server_message(7, 1, extra=opt(14, b""))), IAID, "fe80::1")
    assert (lease.address, lease.prefixlen, lease.valid, lease.preferred) == (ADDRESS, 128, 120, 100)
    assert (lease.renew_after, lease.rebind_after, lease.server_id) == (50, 80, SERVER_DUID.hex())
    assert lease.t1 == lease.obtained + 50 and lease.expires == lease.obtained + 120


def test_zero_t1_t2_are_the_clients_choice_and_never_past_the_lifetime():
    lease = dhcp6.lease_from(dhcp6.parse_message(server_message(7, 1, t1=0, t2=0)), IAID)
    assert (lease.renew_after, lease.rebind_after) == (50, 80)   # 0.5 and 0.8 of the preferred lifetime
    lease = dhcp6.lease_from(dhcp6.parse_message(server_message(7, 1, t1=500, t2=900)), IAID)
    assert (lease.renew_after, lease.rebind_after) == (120, 120)


def test_refusals_and_foreign_messages():
    no_binding = opt(13, struct.pack("!H", 3) + b"no binding")
    with pytest.raises(dhcp6.Dhcp6Refused, match="status 3"):
        dhcp6.lease_from(dhcp6.parse_message(server_message(7, 1, ia_status=no_binding)), IAID)
    with pytest.raises(dhcp6.Dhcp6Refused, match="valid lifetime"):
        dhcp6.lease_from(dhcp6.parse_message(server_message(7, 1, valid=0, preferred=0)), IAID)
    with pytest.raises(dhcp6.Dhcp6Refused, match="no IA_NA"):
        dhcp6.lease_from(dhcp6.parse_message(server_message(7, 1)), IAID + 1)
    assert dhcp6.parse_message(dhcp6.build_message(dhcp6.SOLICIT, 1, WHO)) is None   # a client's, not a server's
    assert dhcp6.parse_message(b"\x07\x00") is None
    truncated = server_message(7, 1)[:-3]
    assert dhcp6.parse_message(truncated)["ias"] == []        # a cut option is dropped, not misread
    no_addrs = dhcp6.parse_message(server_message(2, 1, ia_status=opt(13, struct.pack("!H", 2))))
    assert not dhcp6._usable(no_addrs, IAID)  # pylint: disable=protected-access


def test_lease_addresses_and_client_families():
    assert dhcp6.is_lease_address({"prefixlen": 128, "valid_lft": 120})
    assert not dhcp6.is_lease_address({"prefixlen": 64, "valid_lft": 120})          # SLAAC
    assert not dhcp6.is_lease_address({"prefixlen": 128, "valid_lft": 0xFFFFFFFF})  # static
    assert clients.families(["/sbin/dhclient", "-6", "-pf", "x", "eth0"]) == {6}
    assert clients.families(["/sbin/dhclient", "-4", "eth0"]) == {4}
    assert clients.families(["/sbin/dhclient", "eth0"]) == {4}
    assert clients.families(["/sbin/dhcpcd", "eth0"]) == {4, 6}
    assert clients.families(["/sbin/udhcpc6", "-i", "eth0"]) == {6}


def test_the_lease_survives_its_state_file_and_the_families_are_checked(tmp_path):
    lease = dhcp6.lease_from(dhcp6.parse_message(server_message(7, 1)), IAID, "fe80::1")
    keeper = lease_keeper6.Keeper6("xenbr0", str(tmp_path))
    assert keeper.path == str(tmp_path / "xenbr0.lease6")
    lease_keeper.save(keeper.path, lease)
    assert lease_keeper.load(keeper.path, dhcp6.Lease6) == lease
    lease_keeper.save(keeper.path, None)
    assert lease_keeper.load(keeper.path, dhcp6.Lease6) is None
    both = lease_keeper.keepers("xenbr0", str(tmp_path), "4,6", True, keeper.stopping)
    assert [type(k).__name__ for k in both] == ["Keeper", "Keeper6"] and both[0].path.endswith("xenbr0.lease")
    with pytest.raises(SystemExit, match="say 4, 6 or 4,6"):
        lease_keeper.keepers("xenbr0", str(tmp_path), "5", True, keeper.stopping)
