"""The settings table is the one source: the modules' argument specs and documentation must agree with it."""
from __future__ import annotations

import importlib

import pytest
import yaml
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch import settings
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.daemon import config
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.errors import ValidationError
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.model import BridgeSpec, BridgeState, PortSpec

MODULES = {"vswitch_bridge": settings.BRIDGE, "vswitch_port": settings.PORT}


def _module(name: str):
    return importlib.import_module(f"ansible_collections.openvif.vswitch.plugins.modules.{name}")


@pytest.mark.parametrize("module, table", MODULES.items())
def test_argument_spec_and_documentation_follow_the_table(module, table):
    mod = _module(module)
    options = yaml.safe_load(mod.DOCUMENTATION)["options"]
    for name, setting in table.items():
        spec = mod.ARGUMENT_SPEC.get(name)
        assert spec is not None, f"{module}: setting {name} has no option"
        assert spec["type"] == setting.ansible_type, f"{module}.{name}: argument_spec type differs from the table"
        assert options[name]["type"] == setting.ansible_type, f"{module}.{name}: DOCUMENTATION type differs"
    assert mod.ARGUMENT_SPEC["type" if module == "vswitch_port" else "datapath"]["choices"] == list(
        settings.PORT_TYPES if module == "vswitch_port" else ("kernel", "userspace"))


def test_specs_and_states_have_exactly_the_table_settings():
    assert set(settings.BRIDGE_SETTINGS) <= set(BridgeSpec.__dataclass_fields__)
    assert set(settings.PORT_SETTINGS) <= set(PortSpec.__dataclass_fields__)
    state = BridgeState(name="b")
    for name, setting in settings.BRIDGE.items():
        if setting.default is not None:
            assert getattr(state, name) == setting.default, name


def test_daemon_defaults_come_from_the_table():
    for name, setting in settings.BRIDGE.items():
        assert config.BRIDGE_DEFAULTS[name] == setting.default
    for name, setting in settings.PORT.items():
        assert config.PORT_DEFAULTS[name] == setting.default


@pytest.mark.parametrize("name", ["stp", "forward_delay", "ageing_time"])
def test_kernel_codec_round_trips(name):
    setting = settings.BRIDGE[name]
    value = {"stp": True, "forward_delay": 4.25, "ageing_time": 0}[name]
    assert setting.decode(setting.bridge_attr.encode(value)) == value


def test_daemon_and_model_share_the_validators():
    with pytest.raises(ValidationError) as model_err:
        BridgeSpec.from_params({"name": "b", "ageing_time": -1})
    with pytest.raises(ValidationError) as daemon_err:
        config.apply_changes(config.Config(), [{"op": "add_bridge", "target": "b", "datapath": "userspace",
                                                "args": {"ageing_time": -1}}])
    assert model_err.value.reason == daemon_err.value.reason


def test_bridge_role_bond_options_follow_the_bond_table():
    """The bridge role's bridge_bond_<setting> options are settings.BOND's rows (members is bridge_uplink as a
    list): same type, and each says the table's default (the role leaves them null: the module applies it)."""
    root = importlib.import_module("ansible_collections.openvif.vswitch").__path__[0]
    with open(f"{root}/roles/bridge/meta/argument_specs.yml", encoding="utf-8") as handle:
        options = yaml.safe_load(handle)["argument_specs"]["main"]["options"]
    with open(f"{root}/roles/bridge/defaults/main.yml", encoding="utf-8") as handle:
        defaults = yaml.safe_load(handle)
    with open(f"{root}/roles/bridge/tasks/main.yml", encoding="utf-8") as handle:
        tasks = handle.read()
    for name, setting in settings.BOND.items():
        if name == "members":
            assert options["bridge_uplink"]["type"] == "raw"
            continue
        option = options[f"bridge_bond_{name}"]
        assert option["type"] == setting.ansible_type, name
        assert "default" not in option and defaults[f"bridge_bond_{name}"] is None, name
        text = option["description"]
        described = " ".join(text) if isinstance(text, list) else text
        if setting.default is not None:
            shown = str(setting.default).lower() if isinstance(setting.default, bool) else str(setting.default)
            assert f"Unset, {shown}." in described, f"bridge_bond_{name}: its description's default is not the table's"
        assert f'{name}: "{{{{ bridge_bond_{name} }}}}"' in tasks, f"bridge_bond_{name} is not passed to the module"
    role_bond = {key[len("bridge_bond_"):] for key in options if key.startswith("bridge_bond_")}
    assert not role_bond - {*settings.BOND, "name"}
