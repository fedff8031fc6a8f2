"""vswitch_port's batch form with VM port profiles (``ports`` entries with ``vm``), against a fake
datapath and a real declaration file: one transaction, check mode, diff, idempotence, per-entry errors."""
from __future__ import annotations

import json

import pytest
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch import actions
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.declared import DeclarationStore
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.errors import (
    ConflictError,
    MissingFeatureError,
    NotFoundError,
    ValidationError,
)
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.host import Host
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.hotplug import PlugResult, record_realisation
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.model import BridgeState, PortState
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.plan import Features
from fakes import FakeBackend

WEB01 = {"vm": "web01", "device": 0, "vlan": 10}
DB01 = {"vm": "db01", "device": 1, "bridge": "xenbr0", "trunks": "10-12"}


@pytest.fixture
def store(tmp_path) -> DeclarationStore:
    return DeclarationStore(str(tmp_path))


def backend(**kw) -> FakeBackend:
    return FakeBackend(links=["peth0", "vif1.0", "vif2.0", "vif3.0"], features=Features(vlan_filtering=True),
                       bridges=[BridgeState(name="xenbr0", ports=("peth0",), uplink="peth0")],
                       ports=[PortState(name="peth0", bridge="xenbr0", uplink=True)], **kw)


def profiles_on_disk(store: DeclarationStore) -> dict:
    try:
        with open(store.path, encoding="utf-8") as handle:
            return json.load(handle).get("profiles", {})
    except FileNotFoundError:
        return {}


def batch(*entries, **task) -> dict:
    return {"bridge": "xenbr0", "ports": list(entries), "state": "present", **task}


def test_ports_and_profiles_in_one_task_check_mode_diff_and_idempotence(store):
    fake = backend()
    params = batch("vif1.0", WEB01, DB01)
    checked = actions.port(params, Host([fake], store), True)
    assert checked.changed and fake.applied == [] and profiles_on_disk(store) == {}
    assert checked.before["profiles"] == {"web01/0": {"state": "absent"}, "db01/1": {"state": "absent"}}
    assert checked.after["profiles"]["db01/1"] == {"vm": "db01", "device": 1, "bridge": "xenbr0", "trunks": "10-12"}
    assert checked.before["ports"]["vif1.0"]["bridge"] is None
    assert checked.after["ports"]["vif1.0"]["bridge"] == "xenbr0"

    done = actions.port(params, Host([fake], store), False)
    assert done.changed and done.before == checked.before and done.after == checked.after
    assert len(fake.applied) == 1, "ports and profiles are one transaction"
    assert profiles_on_disk(store) == {"web01/0": {"vm": "web01", "device": 0, "bridge": "xenbr0", "vlan": 10},
                                       "db01/1": {"vm": "db01", "device": 1, "bridge": "xenbr0", "trunks": "10-12"}}
    assert done.values["profiles"]["web01/0"]["interfaces"] == []
    assert json.loads(open(store.path).read())["ports"]["vif1.0"] == {"bridge": "xenbr0"}   # ports declared too

    again = actions.port(params, Host([fake], store), False)
    assert not again.changed and again.values["changes"] == [] and len(fake.applied) == 1

    gone = actions.port(batch(WEB01, state="absent"), Host([fake], store), False)
    assert gone.changed and gone.after["profiles"] == {"web01/0": {"state": "absent"}}
    assert list(profiles_on_disk(store)) == ["db01/1"]
    assert not actions.port(batch(WEB01, state="absent"), Host([fake], store), False).changed


def test_a_running_vif_follows_its_profile_in_the_same_transaction(store):
    fake = backend()
    fake.state = fake.state.__class__(bridges={"xenbr0": BridgeState(name="xenbr0", ports=("peth0", "vif3.0"),
                                                                     uplink="peth0")},
                                      ports={**fake.state.ports, "vif3.0": PortState(name="vif3.0", bridge="xenbr0")},
                                      links=fake.state.links, datapaths=fake.state.datapaths)
    record_realisation("vif3.0", PlugResult([], "xenbr0", "kernel", "web01/0"), store.directory)
    actions.port(batch(WEB01), Host([fake], store), False)
    done = actions.port(batch("vif1.0", {**WEB01, "vlan": 11}), Host([fake], store), False)
    assert done.values["profiles"]["web01/0"]["interfaces"] == ["vif3.0"]
    assert fake.state.ports["vif3.0"].vlan == 11 and fake.state.ports["vif1.0"].bridge == "xenbr0"
    assert len(fake.applied) == 2 and {c.target for c in fake.applied[-1]} == {"vif1.0", "vif3.0"}


@pytest.mark.parametrize("entries, task, error, field, reason", [
    (["vif1.0", {"vm": "web01", "vlan": 0}], {}, ValidationError, "ports[1].vlan", "is not a usable VLAN tag"),
    (["vif1.0", {"vm": "web01", "colour": "red"}], {}, ValidationError, "ports[1].colour", "is not a profile option"),
    ([{"vm": "web01", "name": "vif1.0"}], {}, ValidationError, "ports[0].name", "cannot be combined with 'vm'"),
    ([WEB01, "vif1.0", {**WEB01, "vlan": 11}], {}, ValidationError, "ports[2].vm", "listed twice (also ports[0])"),
    ([{"vm": "web01", "bridge": "xenbr9"}], {}, NotFoundError, "ports[0].bridge", "does not exist on this host"),
    ([{"vm": "a", "mac": "00:16:3e:00:00:01"}, {"vm": "b", "mac": "00:16:3e:00:00:01"}], {"bridge": "xenbr1"},
     ConflictError, "ports[1].mac", "is the port-security MAC of profile a/0 already"),
    ([WEB01, {"vm": "web01", "device": 1, "mac": "00:16:3e:00:00:01"}], {}, MissingFeatureError, "ports[1].mac",
     "port security"),
    ([WEB01, "vif1.0", {"name": "vif2.0", "vlan": 0}], {}, ValidationError, "ports[2].vlan",
     "is not a usable VLAN tag"),
    ([WEB01, "vif1.0", "vif1.0"], {}, ValidationError, "ports[2].name", "listed twice (also ports[1])"),
    ([WEB01, {"name": "vif9.9"}], {}, NotFoundError, "ports[1]", ""),
    ([WEB01], {"purge": True}, ValidationError, "purge", "cannot be combined with profile entries"),
])
def test_bad_entries_are_named_and_nothing_changes(store, entries, task, error, field, reason):
    fake = backend()
    vswitchd = FakeBackend("userspace", features=Features(vlan_filtering=True, port_security=True),
                           bridges=[BridgeState(name="xenbr1", datapath="userspace")])
    with pytest.raises(error) as raised:
        actions.port(batch(*entries, **task), Host([fake, vswitchd], store), False)
    assert raised.value.field.startswith(field) and reason in raised.value.reason, raised.value.message
    assert fake.applied == vswitchd.applied == [] and profiles_on_disk(store) == {}


def test_the_single_profile_form_is_unchanged(store):
    fake = backend()
    done = actions.port({"bridge": "xenbr0", **WEB01, "state": "present"}, Host([fake], store), False)
    assert done.changed and done.values["key"] == "web01/0" and done.values["interfaces"] == []
    assert done.values["profile"] == {"vm": "web01", "device": 0, "bridge": "xenbr0", "vlan": 10}
    assert done.before == {"profiles": {"web01/0": {"state": "absent"}}}
    with pytest.raises(ValidationError, match="cannot be combined with 'vm'"):
        actions.port({"bridge": "xenbr0", **WEB01, "name": "vif1.0"}, Host([fake], store), False)
