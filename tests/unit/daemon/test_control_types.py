"""The control protocol is strict about types: a malformed member is named in a JSON-RPC error, nothing changes."""
from __future__ import annotations

import json
import logging

import pytest
from vswitch.daemon.config import Config, apply_changes
from vswitch.daemon.methods import make_methods, vlog_list, vlog_set
from vswitch.daemon.server import handle_request
from vswitch.errors import ValidationError

INVALID_REQUEST, INVALID_PARAMS = -32600, -32602


class RecordingSwitch:
    """Stands in for Switch: records what reached it, so a refused request provably changed nothing."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def transact(self, changes):
        self.calls.append(("transact", changes))
        return {"changed": bool(apply_changes(Config(), changes).bridges), "serial": 1}

    def fdb(self, bridge, now):
        self.calls.append(("fdb", bridge))
        return []

    def state(self):
        return {}


def ask(switch: RecordingSwitch, request: dict) -> dict:
    return handle_request(json.dumps(request).encode(), make_methods(switch, lambda: 0.0, {}))


@pytest.mark.parametrize("args", [[], [1], "x", 0, True])
def test_args_that_are_not_an_object_are_refused(args):
    with pytest.raises(ValidationError) as err:
        apply_changes(Config(), [{"op": "add_bridge", "target": "br0", "args": args}])
    assert err.value.field == "changes[0].args"


def test_args_list_is_invalid_params_naming_the_member_and_nothing_is_created():
    switch = RecordingSwitch()
    reply = ask(switch, {"id": 1, "method": "transact",
                         "params": {"changes": [{"op": "add_bridge", "target": "br0", "args": []}]}})
    assert reply["error"]["code"] == INVALID_PARAMS
    assert reply["error"]["data"]["field"] == "changes[0].args"
    assert "result" not in reply


@pytest.mark.parametrize("req_id", [[1], {"a": 1}, 1.5, True])
def test_an_id_that_is_not_a_string_integer_or_null_is_an_invalid_request(req_id):
    switch = RecordingSwitch()
    reply = ask(switch, {"id": req_id, "method": "fdb_show", "params": {}})
    assert reply["error"]["code"] == INVALID_REQUEST
    assert "'id'" in reply["error"]["message"]
    assert reply["id"] is None and switch.calls == []


@pytest.mark.parametrize("params, field", [
    ({"changes": {}}, "params.changes"),
    ({"changes": "add_bridge"}, "params.changes"),
    ({}, "params.changes"),
])
def test_transact_params_of_the_wrong_type_are_invalid_params(params, field):
    switch = RecordingSwitch()
    reply = ask(switch, {"id": 2, "method": "transact", "params": params})
    assert reply["error"]["code"] == INVALID_PARAMS
    assert reply["error"]["data"]["field"] == field
    assert switch.calls == []


@pytest.mark.parametrize("bridge", [5, ["br0"], "bad/name", ""])
def test_a_bridge_param_of_the_wrong_type_is_invalid_params(bridge):
    switch = RecordingSwitch()
    reply = ask(switch, {"id": 3, "method": "fdb_show", "params": {"bridge": bridge}})
    assert reply["error"]["code"] == INVALID_PARAMS
    assert reply["error"]["data"]["field"] == "params.bridge"
    assert switch.calls == []


@pytest.mark.parametrize("spec", [":info", "ports:", ":", 5, ["info"]])
def test_vlog_set_refuses_malformed_specs_and_changes_no_level(spec):
    before = vlog_list()
    logging.getLogger("vswitchd.ports").setLevel(logging.NOTSET)
    try:
        reply = ask(RecordingSwitch(), {"id": 4, "method": "vlog_set", "params": {"spec": spec}})
        assert reply["error"]["code"] == INVALID_PARAMS
        assert reply["error"]["data"]["field"] == "params.spec"
        assert vlog_list() == before
        with pytest.raises(ValidationError):
            vlog_set(spec)
    finally:
        vlog_set("info")


def test_well_typed_requests_still_work():
    switch = RecordingSwitch()
    assert ask(switch, {"id": "a", "method": "fdb_show", "params": {"bridge": None}})["result"] == []
    reply = ask(switch, {"id": 5, "method": "transact",
                         "params": {"changes": [{"op": "add_bridge", "target": "br0", "args": None}]}})
    assert reply["result"]["changed"] is True
