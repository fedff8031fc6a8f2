from __future__ import annotations

import json
import os

import pytest
from vswitch.daemon import db as dbmod
from vswitch.daemon.config import Config, apply_changes
from vswitch.daemon.db import StateFile
from vswitch.errors import ConflictError, MissingFeatureError, NotFoundError, ValidationError
from vswitch.model import BridgeSpec, Change, HostState, PortSpec
from vswitch.plan import Features, invert, plan_bridge, plan_ports


def ch(op, target, **args):
    return {"op": op, "target": target, "datapath": "userspace", "args": args}


BASE = [ch("add_bridge", "xenbr0", ageing_time=100), ch("add_port", "vif1.0", bridge="xenbr0", type="tap", vlan=10)]


def test_apply_changes_builds_config_and_never_mutates_input():
    empty = Config()
    cfg = apply_changes(empty, BASE)
    assert empty.to_json() == {"bridges": {}, "ports": {}}
    assert cfg.bridges["xenbr0"]["ageing_time"] == 100
    assert cfg.ports["vif1.0"] == {"bridge": "xenbr0", "type": "tap", "vlan": 10, "trunks": None,
                                   "native_vlan": None, "mac": None, "promiscuous": False, "external_ids": None,
                                   "uplink": False}


def test_a_bad_change_rejects_the_whole_transaction_and_names_it():
    cfg = apply_changes(Config(), BASE)
    with pytest.raises(NotFoundError) as err:
        apply_changes(cfg, [ch("add_port", "vif2.0", bridge="xenbr0", type="tap"),
                            ch("add_port", "vif3.0", bridge="nope", type="tap")])
    assert err.value.field == "changes[1].args.bridge"
    assert "vif2.0" not in cfg.ports


@pytest.mark.parametrize("changes, error, field", [
    ([ch("add_bridge", "xenbr0")], ConflictError, "changes[0].target"),
    ([ch("add_port", "vif1.0", bridge="xenbr0")], ConflictError, "changes[0].target"),
    ([ch("set_port", "vif1.0", bridge="xenbr0", vlan=4095)], ValidationError, "changes[0].args.vlan"),
    ([ch("set_port", "vif1.0", bridge="xenbr0", trunks="10-20")], ValidationError, "ports.vif1.0.vlan"),
    ([ch("set_port", "vif1.0", bridge="xenbr0", colour="red")], ValidationError, "changes[0].args.colour"),
    ([ch("set_bridge", "xenbr0", stp=True)], MissingFeatureError, "changes[0].args.stp"),
    ([ch("set_bridge", "xenbr0", mac="01:00:00:00:00:01")], ValidationError, "changes[0].args.mac"),
    ([ch("del_port", "vif1.0", bridge="other")], ConflictError, "changes[0].args.bridge"),
    ([ch("add_port", "xenbr0", bridge="xenbr0")], ConflictError, "changes[0].target"),
    ([ch("add_port", "a" * 16, bridge="xenbr0")], ValidationError, "changes[0].target"),
    ([{"op": "drop_tables", "target": "x"}], ValidationError, "changes[0].op"),
    ([{"op": "add_bridge", "target": "x", "datapath": "kernel"}], ValidationError, "changes[0].datapath"),
    (["not a change"], ValidationError, "changes[0]"),
    ({"op": "add_bridge"}, ValidationError, "changes"),
    ([ch("add_port", "p1", bridge="xenbr0", uplink=True), ch("add_port", "p2", bridge="xenbr0", uplink=True)],
     ConflictError, "ports.p2.uplink"),
])
def test_invalid_changes(changes, error, field):
    cfg = apply_changes(Config(), BASE)
    with pytest.raises(error) as err:
        apply_changes(cfg, changes)
    assert err.value.field == field


def test_del_bridge_removes_its_ports_and_the_state_passes_through_intermediate_states():
    cfg = apply_changes(Config(), BASE)
    # Access -> trunk in one set_port would be invalid midway only if checked per change: it is not.
    cfg2 = apply_changes(cfg, [ch("set_port", "vif1.0", vlan=None), ch("set_port", "vif1.0", trunks=[10, 20])])
    assert cfg2.ports["vif1.0"]["trunks"] == [10, 20]
    emptied = apply_changes(cfg, [ch("del_bridge", "xenbr0", ports=["vif1.0"])])
    assert emptied.to_json() == {"bridges": {}, "ports": {}}


def test_the_planners_changes_apply_and_their_inverse_restores():
    """One plan drives both datapaths: the daemon takes Change.to_dict() as is, and invert() undoes it."""
    features = {"userspace": Features(True, True, True, True)}
    state = HostState(datapaths=("kernel", "userspace"))
    changes = plan_bridge(BridgeSpec.from_params({"name": "xenbr0", "datapath": "userspace", "mtu": 9000,
                                                  "ageing_time": 0}), state)
    cfg = apply_changes(Config(), [c.to_dict() for c in changes])
    from vswitch.plan import simulate
    state = simulate(state, changes)
    specs = [PortSpec.from_params({"name": "vif1.0", "bridge": "xenbr0", "type": "tap", "trunks": "10-12,20",
                                   "native_vlan": 10, "mac": "00:16:3e:00:00:01", "promiscuous": True})]
    port_changes = plan_ports(specs, state, features)
    cfg2 = apply_changes(cfg, [json.loads(json.dumps(c.to_dict())) for c in port_changes])
    assert cfg2.ports["vif1.0"]["trunks"] == [10, 11, 12, 20]
    assert cfg2.ports["vif1.0"]["mac"] == "00:16:3e:00:00:01"
    undo = invert(port_changes, state)
    assert apply_changes(cfg2, [c.to_dict() for c in undo]) == cfg
    set_change = [Change("set_port", "vif1.0", "userspace", {"bridge": "xenbr0", "vlan": None})]
    assert apply_changes(cfg2, [c.to_dict() for c in set_change]).ports["vif1.0"]["vlan"] is None


def test_state_file_round_trip_and_format(tmp_path):
    path = tmp_path / "sub" / "vswitchd.json"
    store = StateFile(str(path))
    assert store.load() == Config()
    cfg = apply_changes(Config(), BASE)
    store.save(cfg)
    store.save(cfg)
    data = json.loads(path.read_text())
    assert (data["format"], data["version"], data["serial"]) == ("openvif-vswitchd", 1, 2)
    fresh = StateFile(str(path))
    assert fresh.load() == cfg and fresh.serial == 2
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert [p.name for p in path.parent.iterdir()] == ["vswitchd.json"], "no temporary file left behind"


def test_a_failed_write_leaves_the_old_file_whole(tmp_path, monkeypatch):
    path = tmp_path / "vswitchd.json"
    store = StateFile(str(path))
    old = apply_changes(Config(), BASE)
    store.save(old)
    before = path.read_bytes()

    def boom(*args):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(dbmod.os, "replace", boom)
    with pytest.raises(Exception) as err:
        store.save(apply_changes(old, [ch("del_bridge", "xenbr0")]))
    assert "nothing was changed" in str(err.value)
    assert path.read_bytes() == before
    assert store.serial == 1
    assert sorted(os.listdir(tmp_path)) == ["vswitchd.json"]


@pytest.mark.parametrize("content, reason", [
    ("{not json", "cannot be read"),
    ('{"format": "other", "version": 1}', "is not a vswitchd state file"),
    ('{"format": "openvif-vswitchd", "version": 99}', "has version 99"),
    ('{"format": "openvif-vswitchd", "version": 1, "bridges": {}, "ports": {"p": {"bridge": "gone"}}}',
     "is not a bridge"),
])
def test_unusable_state_files_are_refused_not_silently_emptied(tmp_path, content, reason):
    path = tmp_path / "vswitchd.json"
    path.write_text(content)
    with pytest.raises(Exception) as err:
        StateFile(str(path)).load()
    assert reason in str(err.value)
