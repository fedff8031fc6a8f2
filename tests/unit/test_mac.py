"""vif_mac logic: ranges, validation, deterministic choice, registry, fleet planning, filters, module action."""
from __future__ import annotations

import errno
from itertools import islice
from types import SimpleNamespace

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from ansible_collections.openvif.vswitch.plugins.filter import mac as filters
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch import mac as M
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch import mac_host
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.errors import (
    BackendError,
    ConflictError,
    NotFoundError,
    ValidationError,
)


def _nth(key: str, n: int) -> str:
    """The n-th address of ``key``'s probe order (without walking all 2**24)."""
    return next(islice(M.candidates(key), n, None))


# ---------------------------------------------------------------- ranges and validation


@pytest.mark.parametrize("value, prefix, bits", [
    (None, "00:16:3e", 24), ("xen", "00:16:3e", 24), ("00:16:3E", "00:16:3e", 24), ("00-16-3e", "00:16:3e", 24),
    ("00163e", "00:16:3e", 24), ("00:16:3e:80", "00:16:3e:80", 16), ("02:00:00", "02:00:00", 24),
    ("06", "06", 40), ("0a:bc", "0a:bc", 32), ("52:54:00", "52:54:00", 24), ("fe:ff:00:00:01", "fe:ff:00:00:01", 8),
])
def test_prefixes_accepted(value, prefix, bits):
    rng = M.parse_prefix("prefix", value)
    assert (rng.prefix, rng.bits, rng.size) == (prefix, bits, 1 << bits)


@pytest.mark.parametrize("value, reason", [
    ("01:16:3e", "multicast prefix"),
    ("00:50:56", "globally administered prefix other than Xen's OUI"),
    ("00:16", "shorter than Xen's OUI"),
    ("0g:16:3e", "is not a MAC prefix"),
    ("00:16:3e:00:00:01", "is not a MAC prefix"),   # a whole MAC leaves nothing to assign
    ("001", "is not a MAC prefix"),
    (42, "must be a MAC prefix"),
])
def test_prefixes_rejected_with_reason(value, reason):
    with pytest.raises(ValidationError) as err:
        M.parse_prefix("prefix", value)
    assert err.value.field == "prefix"
    assert reason in err.value.reason


def test_normalize_and_errors_name_field_value_and_reason():
    assert M.normalize("mac", "00-16-3E-AA-00-11") == "00:16:3e:aa:00:11"
    assert M.normalize("mac", "00163eaa0011") == "00:16:3e:aa:00:11"
    with pytest.raises(ValidationError) as err:
        M.normalize("vifs[2].mac", "01:16:3e:00:00:01")
    assert err.value.message == ("vifs[2].mac: '01:16:3e:00:00:01' is a multicast address (lowest bit of the first "
                                 "octet is set); a NIC needs a unicast MAC")
    with pytest.raises(ValidationError, match="is not a MAC address"):
        M.normalize("mac", "00:16:3e:aa:00")
    with pytest.raises(ValidationError, match="all-zero"):
        M.normalize("mac", "00:00:00:00:00:00")


def test_range_check_out_of_range_message():
    with pytest.raises(ValidationError) as err:
        M.XEN_RANGE.check("mac", "02:16:3e:00:00:01")
    assert err.value.message == ("mac: '02:16:3e:00:00:01' is outside the requested range 00:16:3e:xx:xx:xx "
                                 "(prefix '00:16:3e')")
    assert M.parse_prefix("p", "02:00").pattern == "02:00:xx:xx:xx:xx"


# ---------------------------------------------------------------- identities and deterministic choice


def test_vif_keys():
    assert M.vif_key("", "web01") == "web01/0"
    assert M.vif_key("", "web01", 2) == "web01/2"
    assert M.vif_key("", "8C1E2A3F-0D4B-4E0E-9A55-3B0C6F1F9A10", 1) == "8c1e2a3f-0d4b-4e0e-9a55-3b0c6f1f9a10/1"
    assert M.vif_key("", interface="vif3.0") == "vif3.0"
    assert M.vif_key("", interface="vif3.0", host="h1") == "h1:vif3.0"
    with pytest.raises(ValidationError, match="needs 'vm'"):
        M.vif_key("", device=1, interface="vif3.0")
    with pytest.raises(ValidationError, match="is required"):
        M.vif_key("")
    with pytest.raises(ValidationError) as err:
        M.vif_key("vifs[0].", "web01", 70000)
    assert err.value.field == "vifs[0].device"
    with pytest.raises(ValidationError):
        M.vif_key("", " web01")


def test_choice_is_deterministic_and_pinned():
    # Golden values: a change here re-addresses every VM deployed with derived MACs.
    assert M.choose("web01/0") == "00:16:3e:2d:97:77"
    assert M.choose("web01/1") == "00:16:3e:f7:8f:2e"
    assert M.choose("web01/0", M.parse_prefix("p", "02:00:00")) == "02:00:00:2d:97:77"
    assert M.choose("web01/0") == M.choose("web01/0")


def test_choice_probes_past_addresses_in_use_deterministically():
    order = [_nth("web01/0", i) for i in range(3)]
    assert order[0] == M.choose("web01/0")
    assert M.choose("web01/0", in_use=order[:1]) == order[1]
    assert M.choose("web01/0", in_use=order[:2]) == order[2]


def test_probe_sequence_covers_the_whole_range_once():
    rng = M.parse_prefix("p", "02:00:00:00:00")  # 256 addresses
    seq = list(M.candidates("x/0", rng))
    assert len(seq) == 256 and len(set(seq)) == 256
    assert all(s.startswith("02:00:00:00:00:") for s in seq)


def test_exhausted_range_is_a_clear_conflict():
    rng = M.parse_prefix("p", "02:00:00:00:00")
    got = M.assign(rng, {}, [f"vm{i}/0" for i in range(256)])
    assert len(set(got.values())) == 256
    with pytest.raises(ConflictError, match="no free address left for 'late/0': all 256 addresses"):
        M.assign(rng, got, ["late/0"])


def test_assign_is_independent_of_input_order_and_keeps_existing():
    rng = M.XEN_RANGE
    keys = [f"vm{i}/0" for i in range(50)]
    assert M.assign(rng, {}, keys) == M.assign(rng, {}, list(reversed(keys)))
    existing = {"old/0": M.mac_to_int(M.choose("vm7/0"))}  # squats on vm7's first choice
    got = M.assign(rng, existing, keys)
    assert got["old/0"] == existing["old/0"]
    assert got["vm7/0"] != existing["old/0"]
    assert M.int_to_mac(got["vm7/0"]) == _nth("vm7/0", 1)


# ---------------------------------------------------------------- host links


def test_owned_addresses_skip_borrowed_and_conventional_ones():
    links = [
        {"index": 1, "interface": "lo", "mac": "00:00:00:00:00:00", "loopback": True},
        {"index": 2, "interface": "eth0", "mac": "52:54:00:00:00:01", "kind": None},
        {"index": 3, "interface": "xenbr0", "mac": "52:54:00:00:00:01", "kind": "bridge"},
        {"index": 4, "interface": "eth0.5", "mac": "52:54:00:00:00:01", "kind": "vlan"},
        {"index": 5, "interface": "bond0", "mac": "52:54:00:00:00:09", "kind": "bond"},
        {"index": 6, "interface": "eth1", "mac": "52:54:00:00:00:09", "kind": None, "master": 5},
        {"index": 7, "interface": "vif1.0", "mac": "fe:ff:ff:ff:ff:ff", "kind": None, "master": 3},
        {"index": 8, "interface": "tap0", "mac": "00:16:3e:00:00:01", "kind": "tun", "master": 3},
        {"index": 9, "interface": "gre0", "mac": "0.0.0.0", "kind": "gre"},
    ]
    assert mac_host.in_use(links) == [
        {"interface": "eth0", "mac": "52:54:00:00:00:01", "kind": "device"},
        {"interface": "tap0", "mac": "00:16:3e:00:00:01", "kind": "tun"},
    ]


# ---------------------------------------------------------------- Xen configuration


def test_xen_vif_entries():
    assert M.xen_vif_entry("00:16:3E:AA:00:11", "xenbr0") == "mac=00:16:3e:aa:00:11,bridge=xenbr0"
    assert M.xen_vif_entry("00:16:3e:aa:00:11") == "mac=00:16:3e:aa:00:11"
    assert M.xen_vif_entry("00:16:3e:aa:00:11", "xenbr0", vifname="web01-0", model=None) == \
        "mac=00:16:3e:aa:00:11,bridge=xenbr0,vifname=web01-0"
    with pytest.raises(ValidationError, match="cannot be written into a Xen vif entry"):
        M.xen_vif_entry("00:16:3e:aa:00:11", "xenbr0", script="a,b")
    assert M.xen_vif_config(["mac=00:16:3e:aa:00:11", "mac=00:16:3e:aa:00:12"]) == \
        "vif = ['mac=00:16:3e:aa:00:11', 'mac=00:16:3e:aa:00:12']"


# ---------------------------------------------------------------- registry


def test_registry_round_trip_is_sorted_stable_yaml():
    text = M.render_registry({"web02/0": "00:16:3e:00:00:02", "h1:vif3.0": "00:16:3e:00:00:03",
                              "web01/0": "00:16:3e:00:00:01"}, M.XEN_RANGE)
    data = yaml.safe_load(text)
    assert data == {"version": 1, "prefix": "00:16:3e", "assignments": {
        "h1:vif3.0": "00:16:3e:00:00:03", "web01/0": "00:16:3e:00:00:01", "web02/0": "00:16:3e:00:00:02"}}
    lines = [line for line in text.splitlines() if line.startswith("  ")]
    assert lines == sorted(lines)
    assert M.parse_registry(data, M.XEN_RANGE) == data["assignments"]


def test_registry_errors():
    with pytest.raises(ConflictError, match="is also assigned to 'a/0'"):
        M.parse_registry({"assignments": {"a/0": "00:16:3e:00:00:01", "b/0": "00:16:3e:00:00:01"}}, M.XEN_RANGE)
    with pytest.raises(ConflictError, match="differs from the requested prefix"):
        M.parse_registry({"prefix": "02:00:00", "assignments": {}}, M.XEN_RANGE)
    with pytest.raises(ValidationError) as err:
        M.parse_registry({"assignments": {"a/0": "02:16:3e:00:00:01"}}, M.XEN_RANGE)
    assert err.value.field == "registry.assignments['a/0']" and "outside the requested range" in err.value.reason
    with pytest.raises(ValidationError, match="not supported"):
        M.parse_registry({"version": 2}, M.XEN_RANGE)


# ---------------------------------------------------------------- fleet planning


def _reg(plan):
    return {"version": 1, "prefix": plan["prefix"], "assignments": plan["registry"]}


def test_plan_assigns_unique_and_second_run_changes_nothing():
    declared = {"h1": [{"vm": "web01", "interface": "vif1.0", "bridge": "xenbr0"}, {"vm": "web02"}],
                "h2": [{"vm": "db01", "interface": "vif1.0"}, {"interface": "vif9.0"}]}
    seen = {"h1": [{"interface": "eth0", "mac": "52:54:00:00:00:01"}], "h2": []}
    first = M.plan_fleet(None, declared, seen)
    macs = list(first["registry"].values())
    assert len(set(macs)) == 4 and first["added"] == sorted(first["registry"])
    assert set(first["registry"]) == {"web01/0", "web02/0", "db01/0", "h2:vif9.0"}
    assert first["assignments"]["h1"][0]["xen_vif"] == f"mac={first['registry']['web01/0']},bridge=xenbr0"
    assert first["registry_changed"]
    # The interfaces now wear their MACs; the second run keeps everything and reports nothing.
    seen2 = {"h1": seen["h1"] + [{"interface": "vif1.0", "mac": first["registry"]["web01/0"]}],
             "h2": [{"interface": "vif1.0", "mac": first["registry"]["db01/0"]}]}
    second = M.plan_fleet(_reg(first), declared, seen2)
    assert second["registry"] == first["registry"] and not second["registry_changed"]
    assert second["added"] == [] and second["duplicates"] == [] and second["kept"] == 4
    assert {e["source"] for e in second["assignments"]["h1"]} == {"registry"}
    assert second["registry_text"] == first["registry_text"]


def test_plan_avoids_macs_seen_anywhere_and_reports_duplicates():
    squat = M.choose("web01/0")
    seen = {"h1": [{"interface": "eth0", "mac": squat}],
            "h2": [{"interface": "eth3", "mac": squat}, {"interface": "eth4", "mac": "52:54:00:00:00:07"}],
            "h3": [{"interface": "eth0", "mac": "52:54:00:00:00:07"}]}
    plan = M.plan_fleet(None, {"h1": [{"vm": "web01"}]}, seen)
    assert plan["registry"]["web01/0"] == _nth("web01/0", 1)
    assert plan["duplicates"] == [
        {"mac": squat, "holders": ["h1:eth0", "h2:eth3"], "seen_on": ["h1:eth0", "h2:eth3"], "resolved": False},
        {"mac": "52:54:00:00:00:07", "holders": ["h2:eth4", "h3:eth0"], "seen_on": ["h2:eth4", "h3:eth0"],
         "resolved": False},
    ]


def test_plan_reports_registered_mac_found_on_another_nic():
    first = M.plan_fleet(None, {"h1": [{"vm": "web01", "interface": "vif1.0"}]}, {})
    mac = first["registry"]["web01/0"]
    seen = {"h1": [{"interface": "vif1.0", "mac": mac}], "h2": [{"interface": "eth7", "mac": mac}]}
    plan = M.plan_fleet(_reg(first), {"h1": [{"vm": "web01", "interface": "vif1.0"}]}, seen)
    assert plan["registry"] == first["registry"]  # the registry wins; the intruder is reported
    assert plan["duplicates"] == [{"mac": mac, "holders": ["h2:eth7", "web01/0"],
                                   "seen_on": ["h1:vif1.0", "h2:eth7"], "resolved": False}]


def test_plan_duplicate_resolved_when_declared_vif_moves_away():
    seen = {"h1": [{"interface": "vif1.0", "mac": "00:16:3e:00:00:05"}],
            "h2": [{"interface": "vif1.0", "mac": "00:16:3e:00:00:05"}]}
    declared = {"h1": [{"vm": "a", "interface": "vif1.0"}], "h2": [{"vm": "b", "interface": "vif1.0"}]}
    plan = M.plan_fleet(None, declared, seen)
    # Neither may adopt a shared address; both get fresh ones, which resolves the duplicate.
    assert plan["adopted"] == [] and sorted(plan["added"]) == ["a/0", "b/0"]
    assert "00:16:3e:00:00:05" not in plan["registry"].values()
    assert plan["duplicates"] == [{"mac": "00:16:3e:00:00:05", "holders": ["a/0", "b/0"],
                                   "seen_on": ["h1:vif1.0", "h2:vif1.0"], "resolved": True}]


def test_plan_adopts_present_unique_in_range_mac_only():
    seen = {"h1": [{"interface": "vif1.0", "mac": "00:16:3e:00:00:05"},
                   {"interface": "vif2.0", "mac": "52:54:00:00:00:05"}]}
    declared = {"h1": [{"vm": "a", "interface": "vif1.0"}, {"vm": "b", "interface": "vif2.0"}]}
    plan = M.plan_fleet(None, declared, seen)
    assert plan["registry"]["a/0"] == "00:16:3e:00:00:05" and plan["adopted"] == ["a/0"]
    assert plan["registry"]["b/0"] != "52:54:00:00:00:05" and plan["added"] == ["b/0"]
    assert M.plan_fleet(None, declared, seen, adopt=False)["adopted"] == []


def test_plan_keeps_existing_when_vms_come_and_go_and_prunes_on_request():
    declared = {"h1": [{"vm": f"vm{i}"} for i in range(20)]}
    first = M.plan_fleet(None, declared, {})
    fewer = {"h1": [{"vm": f"vm{i}"} for i in range(5, 25)]}
    second = M.plan_fleet(_reg(first), fewer, {})
    for i in range(5, 20):
        assert second["registry"][f"vm{i}/0"] == first["registry"][f"vm{i}/0"]
    assert second["undeclared"] == [f"vm{i}/0" for i in range(5)]  # kept, still reserved
    assert len(set(second["registry"].values())) == 25
    pruned = M.plan_fleet(_reg(first), fewer, {}, prune=True)
    assert pruned["pruned"] == [f"vm{i}/0" for i in range(5)]
    assert set(pruned["registry"]) == {f"vm{i}/0" for i in range(5, 25)}


def test_plan_pins():
    first = M.plan_fleet(None, {"h1": [{"vm": "a"}, {"vm": "b"}]}, {})
    plan = M.plan_fleet(_reg(first), {"h1": [{"vm": "a", "mac": "00-16-3E-00-00-AA"}, {"vm": "b"}]}, {})
    assert plan["registry"]["a/0"] == "00:16:3e:00:00:aa" and plan["pinned"] == ["a/0"]
    with pytest.raises(ConflictError, match="is already held by 'b/0'"):
        M.plan_fleet(_reg(first), {"h1": [{"vm": "a", "mac": first["registry"]["b/0"]}, {"vm": "b"}]}, {})
    with pytest.raises(ConflictError, match="is already held by 'h2:eth0'"):
        M.plan_fleet(None, {"h1": [{"vm": "a", "mac": "00:16:3e:00:00:01"}]},
                     {"h2": [{"interface": "eth0", "mac": "00:16:3e:00:00:01"}]})
    with pytest.raises(ValidationError) as err:
        M.plan_fleet(None, {"h1": [{"vm": "a", "mac": "52:54:00:00:00:01"}]}, {})
    assert err.value.field == "vifs[h1][0].mac" and "outside the requested range" in err.value.reason


def test_plan_rejects_bad_declarations():
    with pytest.raises(ConflictError, match="declared twice"):
        M.plan_fleet(None, {"h1": [{"vm": "a"}], "h2": [{"vm": "a", "device": 0}]}, {})
    with pytest.raises(ConflictError, match="already the interface of 'a/0'"):
        M.plan_fleet(None, {"h1": [{"vm": "a", "interface": "vif1.0"}, {"vm": "b", "interface": "vif1.0"}]}, {})
    with pytest.raises(ValidationError) as err:
        M.plan_fleet(None, {"h1": [{"vm": "a", "nic": 1}]}, {})
    assert err.value.field == "vifs[h1][0].nic"
    with pytest.raises(ValidationError) as err:
        M.plan_fleet(None, {"h1": [{"vm": "a", "interface": "bad name"}]}, {})
    assert err.value.field == "vifs[h1][0].interface"
    with pytest.raises(ValidationError, match="multicast prefix"):
        M.plan_fleet(None, {}, {}, "03:00:00")


def test_plan_under_locally_administered_prefix():
    plan = M.plan_fleet(None, {"h1": [{"vm": f"v{i}"} for i in range(100)]}, {}, "0a:bc:de")
    for mac in plan["registry"].values():
        assert mac.startswith("0a:bc:de:") and M.is_locally_administered(mac)


# ---------------------------------------------------------------- filters


def test_filters():
    assert filters.mac_normalize("00-16-3E-AA-00-11") == "00:16:3e:aa:00:11"
    with pytest.raises(AnsibleFilterError, match="mac_normalize: mac: '01:16:3e:aa:00:11' is a multicast"):
        filters.mac_normalize("01:16:3e:aa:00:11")
    with pytest.raises(AnsibleFilterError, match="outside the requested range"):
        filters.mac_normalize("52:54:00:aa:00:11", prefix="00:16:3e")
    assert filters.mac_is_valid("00:16:3e:aa:00:11", "00:16:3e") is True
    assert filters.mac_is_valid("52:54:00:aa:00:11", "00:16:3e") is False
    assert filters.mac_is_valid("ff:ff:ff:ff:ff:ff") is False
    assert filters.mac_is_valid("nonsense") is False
    with pytest.raises(AnsibleFilterError):
        filters.mac_is_valid("00:16:3e:aa:00:11", "01:00:00")
    assert filters.vif_mac("web01") == "00:16:3e:2d:97:77"
    assert filters.vif_mac("web01", 0, in_use=["00:16:3e:2d:97:77"]) == _nth("web01/0", 1)
    assert filters.xen_vif("00:16:3e:aa:00:11", "xenbr0") == "mac=00:16:3e:aa:00:11,bridge=xenbr0"
    assert filters.xen_vif({"mac": "00:16:3e:aa:00:11", "bridge": "xapi1", "key": "a/0"}) == \
        "mac=00:16:3e:aa:00:11,bridge=xapi1"
    assert filters.xen_vif_config(["00:16:3e:aa:00:11", {"mac": "00:16:3e:aa:00:12", "bridge": "b"}], "xenbr0") == \
        "vif = ['mac=00:16:3e:aa:00:11,bridge=xenbr0', 'mac=00:16:3e:aa:00:12,bridge=b']"
    plan = filters.vif_mac_plan(None, {"h1": [{"vm": "web01"}]}, {})
    assert plan["registry"] == {"web01/0": "00:16:3e:2d:97:77"}
    with pytest.raises(AnsibleFilterError, match="vif_mac_plan: vifs\\[h1\\]\\[0\\].vm"):
        filters.vif_mac_plan(None, {"h1": [{"vm": ""}]}, {})


# ---------------------------------------------------------------- module action with fake links


class FakeLinks:
    def __init__(self, links, fail_on=None):
        self.links = {link["interface"]: dict(link) for link in links}
        self.fail_on = fail_on
        self.calls = []

    def read(self):
        return [dict(link) for link in self.links.values()]

    def set_address(self, interface, mac):
        self.calls.append((interface, mac))
        if interface == self.fail_on:
            raise BackendError("interface", interface, "refused")
        self.links[interface]["mac"] = mac


def _ctx(check=False):
    warnings = []
    return SimpleNamespace(check_mode=check, diff=True, warn=warnings.append, warnings=warnings)


def _links():
    return FakeLinks([{"index": 2, "interface": "vif1.0", "mac": "aa:bb:cc:00:00:01", "kind": "veth"},
                      {"index": 3, "interface": "vif2.0", "mac": "aa:bb:cc:00:00:02", "kind": "veth"}])


def test_module_check_mode_then_change_then_idempotent():
    links = _links()
    params = {"vm": "web01", "interface": "vif1.0", "bridge": "xenbr0", "set_interface": True}
    checked = mac_host.run(params, _ctx(check=True), links)
    assert checked.changed and links.calls == []
    assert checked.before == {"vif1.0": "aa:bb:cc:00:00:01"} and checked.after == {"vif1.0": "00:16:3e:2d:97:77"}
    done = mac_host.run(params, _ctx(), links)
    assert done.changed and links.calls == [("vif1.0", "00:16:3e:2d:97:77")]
    assert done.values["xen_vif"] == "mac=00:16:3e:2d:97:77,bridge=xenbr0" and done.values["key"] == "web01/0"
    again = mac_host.run(params, _ctx(), links)
    assert not again.changed and len(links.calls) == 1


def test_module_own_mac_in_in_use_is_not_avoided_but_others_are():
    links = _links()
    links.links["vif1.0"]["mac"] = "00:16:3e:2d:97:77"
    same = mac_host.run({"vm": "web01", "interface": "vif1.0", "in_use": ["00:16:3e:2d:97:77"]}, _ctx(), links)
    assert same.values["mac"] == "00:16:3e:2d:97:77" and not same.changed
    other = mac_host.run({"vm": "web01", "interface": "vif2.0", "in_use": [{"mac": "00:16:3e:2d:97:77"}]},
                         _ctx(), links)
    assert other.values["mac"] == _nth("web01/0", 1)


def test_module_batch_avoids_its_own_choices_and_rolls_back_on_failure():
    links = _links()
    first = M.choose("a/0")
    result = mac_host.run({"vifs": [{"vm": "a", "interface": "vif1.0"}, {"vm": "b", "interface": "vif2.0"}],
                           "in_use": [], "set_interface": True}, _ctx(check=True), links)
    assert [v["mac"] for v in result.values["vifs"]][0] == first
    assert result.values["xen_vif_config"].startswith("vif = ['mac=")
    failing = FakeLinks(links.read(), fail_on="vif2.0")
    with pytest.raises(BackendError):
        mac_host.run({"vifs": [{"vm": "a", "interface": "vif1.0"}, {"vm": "b", "interface": "vif2.0"}]},
                     _ctx(), failing)
    assert failing.links["vif1.0"]["mac"] == "aa:bb:cc:00:00:01"  # set, then set back
    with pytest.raises(ConflictError, match="is also requested for 'a/0'"):
        mac_host.run({"vifs": [{"vm": "a", "mac": "00:16:3e:00:00:01"}, {"vm": "b", "mac": "00:16:3e:00:00:01"}]},
                     _ctx(), links)


def test_module_bad_input_fails_before_touching_the_host():
    links = _links()
    for params, field in [({"vm": "a", "interface": "vif1.0", "mac": "01:16:3e:00:00:01"}, "mac"),
                          ({"vm": "a", "interface": "vif1.0", "mac": "52:54:00:00:00:01"}, "mac"),
                          ({"vm": "a", "interface": "vif1.0", "prefix": "00:50:56"}, "prefix"),
                          ({"vm": "a", "interface": "vif1.0", "mac": "00:16:3e:00:00:09",
                            "in_use": ["00:16:3e:00:00:09"]}, "mac"),
                          ({"vm": "a", "interface": "vif1.0", "in_use": ["zz"]}, "in_use[0]"),
                          ({}, "vm")]:
        with pytest.raises((ValidationError, ConflictError)) as err:
            mac_host.run(params, _ctx(), links)
        assert err.value.field == field
    assert links.calls == []


def test_module_absent_interface_only_computes():
    links = _links()
    result = mac_host.run({"vm": "a", "interface": "vif7.0"}, _ctx(), links)
    assert not result.changed and result.values["exists"] is False and links.calls == []


def test_plan_ignores_seen_addresses_that_are_no_nic_addresses():
    seen = {"h1": [{"interface": "lo", "mac": "00:00:00:00:00:00"}, {"interface": "m", "mac": "01:00:5e:00:00:01"},
                   {"interface": "vif1.0", "mac": "fe:ff:ff:ff:ff:ff"}, {"interface": "gre0", "mac": "0.0.0.0"}],
            "h2": [{"interface": "lo", "mac": "00:00:00:00:00:00"}, {"interface": "vif1.0", "mac": "FE:FF:FF:FF:FF:FF"},
                   {"interface": "eth0", "mac": "00-16-3E-00-00-01"}],
            "h3": [{"interface": "eth0", "mac": "00:16:3e:00:00:01"}]}
    plan = M.plan_fleet(None, {}, seen)
    assert [d["mac"] for d in plan["duplicates"]] == ["00:16:3e:00:00:01"]
    assert plan["duplicates"][0]["seen_on"] == ["h2:eth0", "h3:eth0"]
    with pytest.raises(ValidationError) as err:
        M.plan_fleet(None, {}, {"h1": [{"mac": "00:16:3e:00:00:01"}]})
    assert err.value.field == "seen[h1][0]"


class TaggedStr(str):
    """Ansible 2.19 hands filters str subclasses (data tagging); the planner must treat them as str."""


class TaggedInt(int):
    pass


def test_plan_accepts_str_and_int_subclasses_like_ansible_tagged_values():
    t = TaggedStr
    first = M.plan_fleet(None, {"h1": [{"vm": "web01", "interface": "vif1.0"}]}, {})
    registry = {t("version"): 1, t("prefix"): t("00:16:3e"),
                t("assignments"): {t(k): t(v) for k, v in first["registry"].items()}}
    declared = {t("h1"): [{t("vm"): t("web01"), t("device"): TaggedInt(0), t("interface"): t("vif1.0")}],
                t("h2"): [{t("vm"): t("8C1E2A3F-0D4B-4E0E-9A55-3B0C6F1F9A10")}]}
    seen = {t("h1"): [{t("interface"): t("vif1.0"), t("mac"): t(first["registry"]["web01/0"])}]}
    plan = M.plan_fleet(registry, declared, seen)
    assert plan["registry"]["web01/0"] == first["registry"]["web01/0"] and plan["kept"] == 1
    assert plan["added"] == ["8c1e2a3f-0d4b-4e0e-9a55-3b0c6f1f9a10/0"] and plan["duplicates"] == []
    assert "registry" in plan["assignments"]["h1"][0]["source"]


class FakeIPRoute:
    """Stands in for pyroute2.IPRoute: a link that refuses address changes while up (no IFF_LIVE_ADDR_CHANGE)."""

    def __init__(self, world):
        self.world = world

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def link_lookup(self, ifname):
        return [5] if ifname == self.world["name"] else []

    def link(self, command, index, address=None, state=None):
        from pyroute2.netlink.exceptions import NetlinkError

        self.world["calls"].append((command, address or state))
        if state is not None:
            self.world["up"] = state == "up"
        elif address is not None:
            if self.world["refuse"]:
                raise NetlinkError(self.world["refuse"], "refused")
            if self.world["up"] and self.world["busy_when_up"]:
                raise NetlinkError(errno.EBUSY, "Device or resource busy")
            self.world["mac"] = address

    def get_links(self, index):
        world = self.world

        class Msg(dict):
            def get_attr(self, name):
                return world["mac"]

        return [Msg(flags=1 if world["up"] else 0)]


def _netlink(monkeypatch, **world):
    import pyroute2

    state = {"name": "vif1.0", "mac": "aa:bb:cc:00:00:01", "up": True, "busy_when_up": False, "refuse": 0,
             "calls": []}
    state.update(world)
    monkeypatch.setattr(pyroute2, "IPRoute", lambda: FakeIPRoute(state))
    return state


def test_netlink_set_address_live_and_with_down_up_fallback(monkeypatch):
    live = _netlink(monkeypatch)
    mac_host.NetlinkLinks().set_address("vif1.0", "00:16:3e:00:00:01")
    assert live["calls"] == [("set", "00:16:3e:00:00:01")] and live["mac"] == "00:16:3e:00:00:01"

    busy = _netlink(monkeypatch, busy_when_up=True)
    mac_host.NetlinkLinks().set_address("vif1.0", "00:16:3e:00:00:01")
    assert busy["calls"] == [("set", "00:16:3e:00:00:01"), ("set", "down"), ("set", "00:16:3e:00:00:01"),
                             ("set", "up")]
    assert busy["mac"] == "00:16:3e:00:00:01" and busy["up"] is True


def test_netlink_set_address_errors(monkeypatch):
    refused = _netlink(monkeypatch, refuse=errno.EADDRNOTAVAIL)
    with pytest.raises(BackendError, match="refused address 00:16:3e:00:00:01"):
        mac_host.NetlinkLinks().set_address("vif1.0", "00:16:3e:00:00:01")
    assert refused["mac"] == "aa:bb:cc:00:00:01" and refused["up"] is True
    _netlink(monkeypatch)
    with pytest.raises(NotFoundError, match="does not exist on this host"):
        mac_host.NetlinkLinks().set_address("vif9.9", "00:16:3e:00:00:01")


def test_plan_filter_reads_registry_text():
    first = filters.vif_mac_plan(None, {"h1": [{"vm": "web01"}, {"vm": "web02"}]}, {})
    again = filters.vif_mac_plan(TaggedStr(first["registry_text"]), {"h1": [{"vm": "web01"}, {"vm": "web02"}]}, {})
    assert again["registry"] == first["registry"] and not again["registry_changed"]
    with pytest.raises(AnsibleFilterError, match="the registry is not valid YAML"):
        filters.vif_mac_plan("assignments: [", {}, {})


def test_module_compute_only_does_not_look_at_the_host():
    class NoLinks:
        def read(self):
            raise AssertionError("set_interface=false must not read the host")

    result = mac_host.run({"vm": "a", "interface": "vif1.0", "set_interface": False}, _ctx(), NoLinks())
    assert result.values["exists"] is None and not result.changed and result.values["mac"] == M.choose("a/0")
