"""dhclient6: the DUID and IAID read from ISC dhclient's lease file, and the DUID given to the dhclient that
runs for the bridge. The lease text is in dhclient 4.4's format (as the namespace test's real dhclient
writes it: tests/integration/test_bridge_role_dhcp6.py)."""
from __future__ import annotations

import pytest
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.hostnet import dhclient6, dhcp6

MAC = "02:00:00:77:00:50"
LLT = bytes.fromhex("0001000132aa1848020000770050")   # DUID-LLT: type 1, Ethernet, time, the MAC
LEASES = r'''default-duid "\000\001\000\0012\252\030H\002\000\000w\000P";
lease6 {
  interface "eth0";
  ia-na 00:77:00:50 {
    starts 1796000000;
    renew 60;
    rebind 96;
    iaaddr 2001:db8:77::1bf {
      starts 1796000000;
      preferred-life 120;
      max-life 120;
    }
  }
  option dhcp6.client-id 0:1:0:1:32:aa:18:48:2:0:0:77:0:50;
  option dhcp6.server-id 0:1:0:1:32:aa:18:40:2:0:0:77:0:1;
}
lease6 {
  interface "eth0";
  ia-na 1:2:3:4 {
    starts 1796000060;
  }
}
'''


def test_the_default_duid_and_the_newest_ias_identifier():
    assert dhclient6.parse(LEASES) == {"duid": LLT, "iaid": 0x01020304}


def test_a_file_without_default_duid_falls_back_to_the_leases_client_id():
    text = LEASES.split("\n", 1)[1]
    assert dhclient6.parse(text) == {"duid": LLT, "iaid": 0x01020304}
    assert dhclient6.parse("") is None and dhclient6.parse("lease6 {\n}\n") is None


@pytest.mark.parametrize("data", [LLT, bytes(range(256)), b'a"b\\c 012'])
def test_quote_is_what_unquote_reads(data):
    assert dhclient6.unquote(dhclient6.quote(data)) == data


def test_identity_comes_from_the_lease_file_its_command_line_names(tmp_path):
    path = tmp_path / "dhclient6.eth0.leases"
    path.write_text(LEASES, encoding="latin-1")
    v4 = {"pid": 1, "argv": ["/sbin/dhclient", "-4", "-lf", str(tmp_path / "other"), "eth0"]}
    v6 = {"pid": 2, "argv": ["/sbin/dhclient", "-6", "-pf", "/run/x.pid", "-lf", str(path), "eth0"]}
    assert dhclient6.identity([v4, v6], MAC) == dhcp6.Identity(LLT, 0x01020304)
    assert dhclient6.identity([v4], MAC) is None                       # no dhclient -6
    path.write_text(LEASES.split("lease6", 1)[0], encoding="latin-1")  # a DUID, no lease yet
    assert dhclient6.identity([v6], MAC) == dhcp6.Identity(LLT, dhcp6.iaid(MAC))
    assert dhclient6.lease_file(["dhclient", "-6", "eth0"]) == dhclient6.DEFAULT_LEASE_FILE


def test_seed_puts_the_duid_first_and_leaves_a_file_that_names_one(tmp_path):
    path = tmp_path / "dhclient6.xenbr0.leases"
    argv = ["dhclient", "-6", "-lf", str(path), "xenbr0"]
    who = dhcp6.Identity(LLT, 7)
    dhclient6.seed(argv, who)
    assert dhclient6.parse(path.read_text(encoding="latin-1"))["duid"] == LLT
    path.write_text('default-duid "\\000\\003";\n' + LEASES.split("\n", 1)[1], encoding="latin-1")
    before = path.read_bytes()
    dhclient6.seed(argv, who)                      # dhclient's own DUID stays its own
    assert path.read_bytes() == before
    dhclient6.seed(["dhclient", "-4", "-lf", str(tmp_path / "v4"), "xenbr0"], who)
    assert not (tmp_path / "v4").exists()          # only a DHCPv6 client takes a DUID
