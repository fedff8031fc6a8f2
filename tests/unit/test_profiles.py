"""VM port profiles: the model, which VIF realises which profile, the port it makes, the planned plug,
and how the declaration keeps them (version 2 only when there are profiles)."""
from __future__ import annotations

import json

import pytest
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.declared import (
    VERSION,
    Declaration,
    DeclarationError,
    DeclarationStore,
    parse,
)
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.errors import (
    ConflictError,
    MissingFeatureError,
    NotFoundError,
    ValidationError,
)
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.hotplug import plan_plug
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.model import (
    BridgeState,
    Features,
    HostState,
    Link,
    PortState,
)
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.profiles import (
    PROFILE_SETTINGS,
    Profile,
    VifIdentity,
    match,
    parse_bridge_string,
    resolve,
)
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.settings import PORT

WEB01 = {"vm": "web01", "device": 0, "bridge": "xenbr1", "vlan": 10, "mac": "attached"}
MAC = "00:16:3e:5a:00:01"


def who(ifname="vif3.0", names=("web01",), device=None, mac=MAC) -> VifIdentity:
    ids = {"xen-vm-name": names[0]} if names else {}
    if mac:
        ids["attached-mac"] = mac
    return VifIdentity.from_external_ids(ifname, ids, device=device)


def test_a_profile_holds_the_port_settings_rows_but_type():
    assert set(PROFILE_SETTINGS) == set(PORT) - {"type"}
    profile = Profile.from_params({**WEB01, "trunks": None, "vm": "8C1E0000-0000-0000-0000-00000000AB10"})
    assert profile.key == "8c1e0000-0000-0000-0000-00000000ab10/0"   # UUIDs as vif_mac keys them
    assert Profile.from_params(profile.to_entry()) == profile


@pytest.mark.parametrize("params, field, reason", [
    ({"vm": "web01"}, "bridge", "is required"),
    ({**WEB01, "vlan": 4095}, "vlan", "4094"),
    ({**WEB01, "trunks": "10-20"}, "vlan", "cannot be combined with trunks"),
    ({**WEB01, "mac": "01:00:5e:00:00:01"}, "mac", "multicast"),
    ({**WEB01, "vm": " web01"}, "vm", "leading or trailing spaces"),
    ({**WEB01, "device": -1}, "device", ""),
])
def test_bad_profiles_are_refused_by_field(params, field, reason):
    with pytest.raises(ValidationError) as err:
        Profile.from_params(params)
    assert err.value.field == field and reason in err.value.reason


def test_a_vif_realises_its_vms_profile_of_its_device_whatever_its_name():
    web0, web1 = Profile.from_params(WEB01), Profile.from_params({**WEB01, "device": 1, "mac": None})
    assert match([web0, web1], who("vif3.0")) == web0
    assert match([web0, web1], who("vif17.1")) == web1
    assert match([web0, web1], who("vif3.2")) is None
    assert match([web0], who(names=("db01",))) is None
    assert match([web0], who(names=())) is None
    # libvirt gives no device index: the VM's profile with the VIF's MAC, or its only profile.
    pinned = Profile.from_params({**WEB01, "device": 1, "mac": MAC})
    assert match([web0, pinned], who("vnet0")) == pinned
    assert match([web0], who("vnet0", mac=None)) == web0


def test_a_vm_declared_by_name_and_by_uuid_is_a_conflict():
    by_name = Profile.from_params(WEB01)
    by_uuid = Profile.from_params({**WEB01, "vm": "web01-uuid"})
    both = VifIdentity.from_external_ids("vif3.0", {"xen-vm-name": "web01", "xen-vm-uuid": "web01-uuid"})
    with pytest.raises(ConflictError, match="declare it once"):
        match([by_name, by_uuid], both)


def test_the_port_is_the_callers_request_and_the_profile_which_must_agree():
    profile = Profile.from_params(WEB01)
    spec = resolve(profile, who(), None)
    assert (spec.name, spec.bridge, spec.vlan, spec.mac) == ("vif3.0", "xenbr1", 10, MAC)
    assert resolve(profile, who(), "xenbr1", 10).vlan == 10
    with pytest.raises(ConflictError, match="differs from profile web01/0, which declares vlan 10"):
        resolve(profile, who(), "xenbr1", 20)
    with pytest.raises(ConflictError, match="declares vlan"):
        resolve(profile, who(), "xenbr1", None, (10, 20))
    with pytest.raises(ConflictError, match="the bridge of profile web01/0"):
        resolve(profile, who(), "xenbr0")
    with pytest.raises(NotFoundError, match="came without an attached MAC"):
        resolve(profile, who(mac=None), None)
    pinned = Profile.from_params({**WEB01, "mac": "00:16:3e:5a:00:02"})
    with pytest.raises(ConflictError, match="would lose every frame"):
        resolve(pinned, who(), None)
    with pytest.raises(NotFoundError, match="no profile declares one"):
        resolve(None, who(), None)
    assert resolve(None, who(), "xenbr0", 5).vlan == 5


def test_a_non_unicast_attached_mac_is_refused():
    with pytest.raises(ValidationError, match="multicast"):
        who(mac="01:00:5e:00:00:01")


@pytest.mark.parametrize("text, parsed", [
    ("xenbr0", ("xenbr0", None, None)), ("xenbr0.5", ("xenbr0", 5, None)),
    ("xenbr0:10:20", ("xenbr0", None, (10, 20))), ("xenbr0.5:10", ("xenbr0", 5, (10,))),
])
def test_xens_bridge_strings(text, parsed):
    assert parse_bridge_string(text) == parsed


@pytest.mark.parametrize("text", ["", "xenbr0.", "xenbr0.x", "xenbr0:a", "xenbr0.5000", "a" * 16])
def test_bad_bridge_strings(text):
    with pytest.raises(ValidationError):
        parse_bridge_string(text)


def _host(**ports: PortState) -> HostState:
    bridges = {"xenbr1": BridgeState(name="xenbr1", datapath="userspace", ports=tuple(sorted(ports))),
               "xenbr0": BridgeState(name="xenbr0", datapath="kernel")}
    links = {name: Link(name=name) for name in ("vif3.0", "peth1", *ports)}
    return HostState(bridges=bridges, ports=dict(ports), links=links, datapaths=("kernel", "userspace"))


USERSPACE = Features(vlan_filtering=True, port_promiscuous=True, port_security=True, create_ports=True,
                     external_ids=True)
FEATURES = {"kernel": Features(), "userspace": USERSPACE}


def test_a_planned_plug_carries_the_profile_and_the_identity():
    state = _host(peth1=PortState(name="peth1", bridge="xenbr1", trunks=(10, 20)))
    changes, result = plan_plug(state, FEATURES, [Profile.from_params(WEB01)], who(), "xenbr1",
                                {"xen-vm-name": "web01", "attached-mac": MAC})
    assert [c.op for c in changes] == ["add_port"] and result.profile == "web01/0"
    args = changes[0].args
    assert args["vlan"] == 10 and args["mac"] == MAC
    assert args["external_ids"] == {"xen-vm-name": "web01", "attached-mac": MAC, "openvif-profile": "web01/0",
                                    "openvif-device": "0"}


def test_a_vlan_no_trunk_carries_is_refused_and_a_kernel_profile_cannot_lock_a_mac():
    state = _host(peth1=PortState(name="peth1", bridge="xenbr1", trunks=(10, 20)))
    with pytest.raises(NotFoundError, match="is not carried by 'xenbr1'"):
        plan_plug(state, FEATURES, [], who(names=()), "xenbr1.30")
    assert plan_plug(_host(), FEATURES, [], who(names=()), "xenbr1.30")[0][0].args["vlan"] == 30   # internal
    kernel = Profile.from_params({**WEB01, "bridge": "xenbr0", "vlan": None})
    with pytest.raises(MissingFeatureError, match="port security"):
        plan_plug(state, FEATURES, [kernel], who(), None)
    with pytest.raises(NotFoundError, match="'xenbr9' does not exist"):
        plan_plug(state, FEATURES, [], who(names=()), "xenbr9")


def test_a_plain_uplink_carries_every_vlan_and_an_access_uplink_only_its_own():
    plain = _host(peth1=PortState(name="peth1", bridge="xenbr1", uplink=True))
    assert plan_plug(plain, FEATURES, [], who(names=()), "xenbr1.30")[0][0].args["vlan"] == 30
    access = _host(peth1=PortState(name="peth1", bridge="xenbr1", uplink=True, vlan=5))
    with pytest.raises(NotFoundError, match="is not carried by 'xenbr1': its trunks \\('peth1'\\) carry 5"):
        plan_plug(access, FEATURES, [], who(names=()), "xenbr1.30")


def test_the_declaration_keeps_profiles_as_version_2_only_when_there_are_some(tmp_path):
    store = DeclarationStore(str(tmp_path))
    store.save(Declaration())
    assert json.loads(open(store.path).read())["version"] == 1
    profile = Profile.from_params(WEB01)
    store.save(Declaration(profiles={profile.key: profile.to_entry()}))
    data = json.loads(open(store.path).read())
    assert data["version"] == VERSION == 2 and data["profiles"] == {"web01/0": WEB01}
    assert store.load()[0].all_profiles() == [profile]


@pytest.mark.parametrize("profiles, reason", [
    ({"web01/1": WEB01}, "is not the key of its profile"),
    ({"web01/0": {**WEB01, "vlan": 0}}, "is invalid at profiles.web01/0.vlan"),
    ({"web01/0": {**WEB01, "colour": "red"}}, "is an unknown field of profiles.web01/0"),
    ({"a/0": {**WEB01, "vm": "a", "mac": MAC}, "b/0": {**WEB01, "vm": "b", "mac": MAC}}, "port-security MAC"),
])
def test_damaged_profiles_are_named(profiles, reason):
    text = json.dumps({"format": "openvif.vswitch.declared", "version": 2, "profiles": profiles})
    with pytest.raises(DeclarationError, match=reason):
        parse(text, "/s/declared.json")
