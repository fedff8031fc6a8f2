"""The persisted declaration: what module runs record, how it is written, and every way it can be damaged."""
from __future__ import annotations

import json
import os
from dataclasses import replace

import pytest
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch import actions
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.declared import (
    FORMAT,
    VERSION,
    Declaration,
    DeclarationError,
    DeclarationStore,
    NewerDeclarationError,
    parse,
)
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.errors import BackendError, VswitchError
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.host import Host
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.model import Link
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.plan import Features
from fakes import FakeBackend

GOOD = {"format": FORMAT, "version": VERSION,
        "bridges": {"xenbr0": {"mac": "02:00:00:00:00:01", "uplink": "peth0", "forward_delay": 0.0},
                    "xapi1": {"mac": "02:00:00:00:00:02", "ageing_time": 0, "mtu": 9000}},
        "vlans": {"xapi5": {"parent": "xenbr0", "tag": 5}},
        "ports": {"vif1.0": {"bridge": "xenbr0"}, "peth1": {"bridge": "xenbr0", "trunks": "5-6"}}}


def _text(**changes) -> str:
    data = json.loads(json.dumps(GOOD))
    data.update(changes)
    return json.dumps(data)


def test_good_declaration_parses_through_the_model():
    decl = parse(json.dumps(GOOD), "/x/declared.json")
    assert decl.bridge_spec("xapi1").mtu == 9000 and decl.bridge_spec("xenbr0").uplink == "peth0"
    assert decl.port_spec("peth1").trunks == (5, 6) and decl.vlan_spec("xapi5").tag == 5


@pytest.mark.parametrize("text, expected", [
    ("", "is empty (truncated"),
    (json.dumps(GOOD)[:-7], "is truncated: the JSON object stops after"),
    ("bridges: [xenbr0]", "is not JSON"),
    ("[1, 2]", "is not an openvif declaration"),
    (json.dumps({"version": 1, "bridges": {}}), "is not an openvif declaration"),
    (_text(version="1"), "'1' is not a declaration version"),
    (_text(version=0), "0 is not a declaration version"),
    (_text(colour="blue"), "'colour' is an unknown field (known:"),
    (_text(bridges={"xenbr0": {"mac": "02:00:00:00:00:01", "colour": 1}}), "'colour' is an unknown field of "
                                                                           "bridges.xenbr0"),
    (_text(ports={"vif1.0": {"bridge": "xenbr0", "speed": 10}}), "'speed' is an unknown field of ports.vif1.0"),
    (_text(ports={"xapi1": {"bridge": "xenbr0"}}), "'xapi1' is declared both as a bridge and as a port of bridge "
                                                   "'xenbr0'"),
    (_text(vlans={"xapi1": {"parent": "xenbr0", "tag": 7}}), "'xapi1' is declared both as a bridge and as a VLAN"),
    (_text(bridges={"xenbr0": {"uplink": "xapi1"}, "xapi1": {}}), "'xapi1' is the uplink of bridge 'xenbr0' and "
                                                                  "a bridge itself"),
    (_text(bridges={"xenbr0": {"mtu": 12}}), "12 is invalid at bridges.xenbr0.mtu:"),
    (_text(bridges={"xenbr0-much-too-long": {}}), "is invalid at bridges.xenbr0-much-too-long.name"),
    (_text(ports={"vif1.0": {}}), "is invalid at ports.vif1.0.bridge"),
    (_text(ports=[]), "is not a mapping of names to entries (ports)"),
])
def test_every_damaged_declaration_is_refused_naming_file_and_fault(text, expected):
    with pytest.raises(DeclarationError) as err:
        parse(text, "/srv/h1/declared.json")
    assert err.value.message.startswith("declaration /srv/h1/declared.json:")
    assert expected in err.value.message


def test_newer_version_is_refused_by_name():
    with pytest.raises(NewerDeclarationError, match=rf"declared.json: {VERSION + 1} is the version of a newer "
                                                    rf"openvif.vswitch \(this one reads up to version {VERSION}\); "
                                                    "refusing"):
        parse(_text(version=VERSION + 1), "/s/declared.json")


# ------------------------------------------------------------------ the store on disk
def test_save_is_atomic_and_keeps_the_last_good_copy(tmp_path):
    store = DeclarationStore(str(tmp_path / "state"))
    first = parse(json.dumps(GOOD), store.path)
    store.save(first)
    assert not os.path.exists(store.good_path)   # nothing to keep before the first write
    second = Declaration(bridges={"xapi9": {"mac": "02:00:00:00:00:09"}})
    store.save(second)
    assert store.load() == (second, None)
    assert parse(open(store.good_path).read(), store.good_path) == first
    assert sorted(os.listdir(store.directory)) == ["declared.json", "declared.json.good"]  # no temp file left
    assert oct(os.stat(store.directory).st_mode & 0o777) == "0o700"


def test_damaged_file_falls_back_to_the_good_copy_and_is_never_kept_as_good(tmp_path):
    store = DeclarationStore(str(tmp_path))
    store.save(Declaration(bridges={"a": {"mac": "02:00:00:00:00:0a"}}))
    store.save(Declaration(bridges={"b": {"mac": "02:00:00:00:00:0b"}}))
    with open(store.path, "w") as handle:
        handle.write('{"format": "openvif.vswitch.declared", "vers')
    decl, problem = store.load()
    assert set(decl.bridges) == {"a"} and "is truncated" in problem.message and store.path in problem.message
    store.save(decl)   # the damaged file is not promoted to good copy
    assert set(parse(open(store.good_path).read(), "g").bridges) == {"a"}


def test_damaged_file_without_good_copy_is_an_error_naming_both(tmp_path):
    store = DeclarationStore(str(tmp_path))
    with open(store.path, "w") as handle:
        handle.write("not json")
    with pytest.raises(DeclarationError, match=r"is not JSON .*there is no good copy \(.*declared.json.good\)"):
        store.load()


def test_newer_file_is_not_replaced_by_the_good_copy(tmp_path):
    store = DeclarationStore(str(tmp_path))
    store.save(Declaration())
    store.save(Declaration(bridges={"b": {}}))
    with open(store.path, "w") as handle:
        handle.write(_text(version=VERSION + 1))
    with pytest.raises(NewerDeclarationError):
        store.load()


def test_missing_file_is_an_empty_declaration(tmp_path):
    assert DeclarationStore(str(tmp_path / "none")).load() == (Declaration(), None)


def test_unwritable_directory_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(DeclarationError, match="cannot be written .*set OPENVIF_STATE_DIR"):
        DeclarationStore(str(blocker / "sub")).save(Declaration())


def test_state_dir_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENVIF_STATE_DIR", str(tmp_path / "h7"))
    assert DeclarationStore().path == str(tmp_path / "h7" / "declared.json")
    monkeypatch.delenv("OPENVIF_STATE_DIR")
    assert DeclarationStore().path == "/var/lib/openvif/declared.json"


# ------------------------------------------------------------------ what module runs record
def _host(tmp_path, **kw) -> tuple[Host, FakeBackend, DeclarationStore]:
    backend = FakeBackend(links=["peth0", "peth1", "vif1.0", "vif2.0"], **kw)
    store = DeclarationStore(str(tmp_path))
    return Host([backend], declarations=store), backend, store


def _fresh(host: Host) -> Host:
    return Host(list(host.backends.values()), declarations=host.declarations)


def test_runs_record_declared_settings_pinned_mac_and_ports(tmp_path):
    host, backend, store = _host(tmp_path)
    actions.bridge({"bridges": [{"name": "xenbr0", "uplink": "peth0", "forward_delay": 0},
                                {"name": "xapi1", "ageing_time": 0}]}, host, False)
    actions.port({"bridge": "xapi1", "ports": ["vif1.0", "vif2.0"]}, _fresh(host), False)
    decl, _source = store.load()
    mac = backend.state.bridges["xenbr0"].mac
    assert decl.bridges == {"xenbr0": {"mac": mac, "uplink": "peth0", "forward_delay": 0.0},
                            "xapi1": {"mac": backend.state.bridges["xapi1"].mac, "ageing_time": 0}}
    assert decl.ports == {"vif1.0": {"bridge": "xapi1"}, "vif2.0": {"bridge": "xapi1"}}
    # A later run adds what it declares to what was declared before.
    actions.bridge({"name": "xapi1", "mtu": 9000}, _fresh(host), False)
    assert store.load()[0].bridges["xapi1"] == {"mac": backend.state.bridges["xapi1"].mac, "ageing_time": 0,
                                                "mtu": 9000}


def test_absent_purge_and_move_remove_entries(tmp_path):
    host, backend, store = _host(tmp_path)
    actions.bridge({"bridges": [{"name": "xenbr0"}, {"name": "xapi1"}]}, host, False)
    actions.port({"ports": [{"name": "vif1.0", "bridge": "xapi1"}, {"name": "vif2.0", "bridge": "xapi1"}]},
                 _fresh(host), False)
    actions.port({"bridge": "xapi1", "ports": ["vif1.0"], "purge": True}, _fresh(host), False)
    assert store.load()[0].ports == {"vif1.0": {"bridge": "xapi1"}}
    actions.port({"bridge": "xenbr0", "name": "vif1.0", "move": True}, _fresh(host), False)
    assert store.load()[0].ports == {"vif1.0": {"bridge": "xenbr0"}}
    actions.port({"bridge": "xenbr0", "name": "vif1.0", "state": "absent"}, _fresh(host), False)
    assert store.load()[0].ports == {}
    actions.port({"bridge": "xenbr0", "name": "vif2.0"}, _fresh(host), False)
    actions.bridge({"name": "xenbr0", "state": "absent"}, _fresh(host), False)
    decl = store.load()[0]
    assert set(decl.bridges) == {"xapi1"} and decl.ports == {}   # its ports went with it


def test_access_and_trunk_replace_each_other(tmp_path):
    host, _backend, store = _host(tmp_path, features=Features(vlan_filtering=True))
    actions.bridge({"name": "xenbr0"}, host, False)
    actions.port({"bridge": "xenbr0", "name": "peth1", "trunks": "5-7,9", "native_vlan": 1}, _fresh(host), False)
    assert store.load()[0].ports["peth1"] == {"bridge": "xenbr0", "trunks": "5-7,9", "native_vlan": 1}
    actions.port({"bridge": "xenbr0", "name": "peth1", "vlan": 5}, _fresh(host), False)
    assert store.load()[0].ports["peth1"] == {"bridge": "xenbr0", "vlan": 5}
    actions.vlan({"name": "xapi5", "parent": "xenbr0", "tag": 5}, _fresh(host), False)
    assert store.load()[0].vlans == {"xapi5": {"parent": "xenbr0", "tag": 5}}
    actions.vlan({"name": "xapi5", "state": "absent"}, _fresh(host), False)
    assert store.load()[0].vlans == {}


def test_check_mode_and_userspace_bridges_record_nothing(tmp_path):
    host, _backend, store = _host(tmp_path)
    actions.bridge({"name": "xenbr0"}, host, True)
    assert not os.path.exists(store.path)
    user = FakeBackend(datapath="userspace")
    both = Host([FakeBackend(), user], declarations=store)
    actions.bridge({"name": "xenbr1", "datapath": "userspace"}, both, False)
    assert not os.path.exists(store.path)


def test_failed_run_leaves_the_declaration_byte_for_byte(tmp_path):
    host, backend, store = _host(tmp_path)
    actions.bridge({"name": "xenbr0"}, host, False)
    before = open(store.path, "rb").read()
    backend.fail_on = "add_port"
    with pytest.raises(BackendError):
        actions.bridge({"name": "xapi1", "uplink": "peth0"}, _fresh(host), False)
    with pytest.raises(VswitchError):
        actions.port({"bridge": "nosuch", "name": "vif1.0"}, _fresh(host), False)
    assert open(store.path, "rb").read() == before and not os.path.exists(store.good_path)


def test_damaged_declaration_fails_the_run_before_the_host_changes(tmp_path):
    host, backend, store = _host(tmp_path)
    with open(store.path, "w") as handle:
        handle.write("{")
    with pytest.raises(DeclarationError, match="declared.json: .*truncated"):
        actions.bridge({"name": "xenbr0"}, host, False)
    assert backend.applied == [] and open(store.path).read() == "{"


def test_damaged_declaration_with_good_copy_warns_and_is_repaired(tmp_path):
    host, backend, store = _host(tmp_path)
    actions.bridge({"name": "xenbr0"}, host, False)
    actions.bridge({"name": "xapi1"}, _fresh(host), False)
    with open(store.path, "w") as handle:
        handle.write("garbage")
    result = actions.bridge({"name": "xapi2"}, _fresh(host), False)
    assert any("is not JSON" in w and "last good copy" in w for w in result.warnings)
    assert set(store.load()[0].bridges) == {"xenbr0", "xapi2"}   # the good copy held xenbr0 only


def test_boot_unit_missing_is_said_once_per_host(tmp_path, monkeypatch):
    from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch import declared
    monkeypatch.setattr(declared, "boot_unit_installed", lambda: False)
    host, _backend, _store = _host(tmp_path)
    first = actions.bridge({"name": "xenbr0"}, host, False)
    second = actions.bridge({"name": "xapi1"}, _fresh(host), False)
    assert [w for w in first.warnings if "will not survive a reboot" in w] and second.warnings == []
    monkeypatch.setattr(declared, "boot_unit_installed", lambda: True)
    other, _backend2, _store2 = _host(tmp_path / "h2")
    assert actions.bridge({"name": "xenbr0"}, other, False).warnings == []


def test_declared_port_replaces_a_stale_bridge_entry(tmp_path):
    host, backend, store = _host(tmp_path)
    actions.bridge({"bridges": [{"name": "xenbr0"}, {"name": "xapi1"}]}, host, False)
    # xapi1 is deleted by hand and its name reused for a veth, which is then declared as a port.
    bridges = dict(backend.state.bridges)
    del bridges["xapi1"]
    backend.state = replace(backend.state, bridges=bridges,
                            links={**backend.state.links, "xapi1": Link(name="xapi1", kind="veth")})
    actions.port({"bridge": "xenbr0", "name": "xapi1"}, _fresh(host), False)
    decl = store.load()[0]
    assert set(decl.bridges) == {"xenbr0"} and decl.ports == {"xapi1": {"bridge": "xenbr0"}}


# ------------------------------------------------------------------ drift
def test_info_reports_drift_between_declaration_and_host(tmp_path):
    host, backend, store = _host(tmp_path)
    actions.bridge({"bridges": [{"name": "xenbr0", "uplink": "peth0"}, {"name": "xapi1", "ageing_time": 0}]},
                   host, False)
    actions.port({"ports": [{"name": "vif1.0", "bridge": "xenbr0"}, {"name": "vif2.0", "bridge": "xapi1"}]},
                 _fresh(host), False)
    assert actions.info({}, _fresh(host)).values["vswitch"]["declaration"] == {
        "path": store.path, "error": None, "drift": []}
    # By hand: xapi1 loses its ageing, vif1.0 is detached, and vif2.0's VM stops (its VIF is gone).
    bridges = dict(backend.state.bridges)
    bridges["xapi1"] = replace(bridges["xapi1"], ageing_time=300, ports=())
    bridges["xenbr0"] = replace(bridges["xenbr0"], ports=("peth0",))
    ports = {k: v for k, v in backend.state.ports.items() if k == "peth0"}
    links = {k: v for k, v in backend.state.links.items() if k != "vif2.0"}
    backend.state = replace(backend.state, bridges=bridges, ports=ports, links=links)
    facts = actions.info({}, _fresh(host)).values["vswitch"]["declaration"]
    assert facts["drift"] == [
        {"kind": "bridge", "name": "xapi1", "field": "ageing_time", "declared": 0, "actual": 300},
        {"kind": "port", "name": "vif1.0", "field": "bridge", "declared": "xenbr0", "actual": None}]
    only = actions.info({"bridges": ["xapi1"]}, _fresh(host)).values["vswitch"]["declaration"]["drift"]
    assert [e["name"] for e in only] == ["xapi1"]
    del bridges["xenbr0"]
    backend.state = replace(backend.state, bridges=bridges, ports={})
    facts = actions.info({}, _fresh(host)).values["vswitch"]["declaration"]
    assert {"kind": "bridge", "name": "xenbr0", "field": "state", "declared": "present", "actual": "absent"} \
        in facts["drift"]


def test_info_reports_a_damaged_declaration_instead_of_failing(tmp_path):
    host, _backend, store = _host(tmp_path)
    with open(store.path, "w") as handle:
        handle.write("{")
    facts = actions.info({}, host).values["vswitch"]["declaration"]
    assert facts["drift"] == [] and "is truncated" in facts["error"] and store.path in facts["error"]
