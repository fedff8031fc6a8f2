"""ovs-vsctl's command language against a state in memory: parsing, the model mapping, printing.

The same command lines run against a real Open vSwitch in tests/integration/daemon/test_vsctl_callers.py;
here each rule is pinned on its own, without a daemon.
"""
from __future__ import annotations

import pytest
from vswitch.model import BridgeState, HostState, Link, PortState
from vswitch.userspace import FEATURES
from vswitch.vsctl import commands, syntax
from vswitch.vsctl.commands import Context
from vswitch.vsctl.syntax import VsctlError

OPTS = {"format": "list", "bare": False, "no_headings": False}


def state() -> HostState:
    return HostState(bridges={"xenbr0": BridgeState(name="xenbr0", datapath="userspace", ports=("vif1.0",))},
                     ports={"vif1.0": PortState(name="vif1.0", bridge="xenbr0", vlan=5)},
                     links={name: Link(name=name) for name in ("xenbr0", "vif1.0", "vif2.0", "vif3.0")},
                     datapaths=("userspace",))


def run(line: list[str], st: HostState | None = None) -> tuple[Context, list[str]]:
    parsed = syntax.parse_command_line(line)
    ctx = Context(st or state(), FEATURES)
    outs = []
    for cmd in parsed.commands:
        out = commands.check(cmd).run(ctx, cmd, OPTS)
        if out is not None:   # None: the command prints nothing (an empty string is an empty line)
            outs.append(out)
    return ctx, outs


def test_global_options_commands_and_their_options():
    line = syntax.parse_command_line(["--timeout=30", "--", "--if-exists", "del-port", "vif1.0", "--",
                                      "add-port", "xenbr0", "vif1.0", "tag=5"])
    assert line.timeout == 30.0
    assert [(c.name, c.args, c.options) for c in line.commands] == [
        ("del-port", ["vif1.0"], {"if-exists": None}), ("add-port", ["xenbr0", "vif1.0", "tag=5"], {})]
    assert syntax.parse_command_line(["--may-exist", "add-br", "x"]).commands[0].options == {"may-exist": None}
    with pytest.raises(VsctlError, match="unrecognized option '--frobnicate'"):
        syntax.parse_command_line(["--frobnicate", "list-br"])
    with pytest.raises(VsctlError, match="'list-br' command has no '--may-exist' option"):
        commands.check(syntax.parse_command_line(["--", "--may-exist", "list-br"]).commands[0])
    with pytest.raises(VsctlError, match="unknown command 'frob'"):
        commands.check(syntax.parse_command_line(["frob"]).commands[0])


@pytest.mark.parametrize("text, printed", [
    ("active", "active"), ("abc-1", "abc-1"), ("a.b-c_d", "a.b-c_d"), ("_y", "_y"), ("5", '"5"'),
    ("true", '"true"'), ("00:16:3e:00:00:01", '"00:16:3e:00:00:01"'), ("a b", '"a b"'), ("-x", '"-x"'),
    ("", '""'), ("1abc", '"1abc"'),
])
def test_strings_print_bare_or_quoted_as_ovsdb_does(text, printed):
    # Each pair was read off Open vSwitch 3.1's ovs-vsctl get.
    assert syntax.quote(text) == printed


def test_xen_vif_openvswitch_line_is_one_transaction_with_external_ids():
    # vif-openvswitch expands its external IDs unquoted, so the quotes reach us literally
    ctx, _outputs = run(["--timeout=30", "--", "--if-exists", "del-port", "vif2.0", "--", "add-port", "xenbr0",
                         "vif2.0", "trunk=10,20", "--", "set", "interface", "vif2.0",
                         'external-ids:"xen-vm-name"="web01"', "--", "set", "interface", "vif2.0",
                         'external-ids:"attached-mac"="00:16:3e:00:00:02"'])
    port = ctx.state.ports["vif2.0"]
    assert port.trunks == (10, 20) and port.vlan is None
    assert port.external_ids == {"attached-mac": "00:16:3e:00:00:02", "xen-vm-name": "web01"}
    assert [c.op for c in ctx.changes] == ["add_port", "set_port", "set_port", "set_port"]


def test_vlan_columns_map_onto_port_modes():
    ctx, out = run(["set", "port", "vif1.0", "vlan_mode=native-untagged", "tag=7", "trunks=[10, 20]", "--",
                    "get", "port", "vif1.0", "vlan_mode", "tag", "trunks"])
    port = ctx.state.ports["vif1.0"]
    assert (port.vlan, port.native_vlan, port.trunks) == (None, 7, (10, 20))
    assert out == ["native-untagged\n7\n[10, 20]"]
    ctx, out = run(["set", "port", "vif1.0", "tag=[]", "--", "get", "port", "vif1.0", "tag"])
    assert ctx.state.ports["vif1.0"].vlan is None and out == ["[]"]
    with pytest.raises(VsctlError, match="native-tagged is not supported"):
        run(["set", "port", "vif1.0", "vlan_mode=native-tagged", "trunks=10"])
    with pytest.raises(VsctlError, match="tag and trunks together need vlan_mode"):
        run(["set", "port", "vif1.0", "trunks=10"])
    with pytest.raises(VsctlError, match="tag: 5000 is out of range"):
        run(["set", "port", "vif1.0", "tag=5000"])


def test_get_list_remove_clear_on_external_ids():
    ctx, out = run(["set", "Interface", "vif1.0", "external_ids={iface-id=abc, vm-id=\"u 1\"}", "--",
                    "get", "Interface", "vif1.0", "external_ids", "external_ids:vm-id", "--",
                    "remove", "Interface", "vif1.0", "external_ids", "iface-id", "--",
                    "--columns=name,external_ids", "list", "Interface", "vif1.0"])
    assert out == ['{iface-id=abc, vm-id="u 1"}\n"u 1"',
                   'name                : vif1.0\nexternal_ids        : {vm-id="u 1"}']
    ctx, _outputs = run(["clear", "Interface", "vif1.0", "external_ids"], ctx.state)
    assert ctx.state.ports["vif1.0"].external_ids is None
    with pytest.raises(VsctlError, match='no key "nokey" in Interface record "vif1.0" column external_ids'):
        run(["get", "Interface", "vif1.0", "external_ids:nokey"])
    assert run(["--", "--if-exists", "get", "Interface", "vif1.0", "external_ids:nokey"])[1] == [""]


def test_errors_name_the_row_column_or_command_and_plan_nothing():
    cases = [
        (["get", "Interface", "vif9", "name"], 'no row "vif9" in table Interface'),
        (["get", "Port", "vif1.0", "nosuchcol"], 'Port does not contain a column whose name matches "nosuchcol"'),
        (["get", "Port", "vif1.0", "tag:x"], "cannot specify key to get for non-map column tag"),
        (["add-port", "xenbr0", "vif1.0"], "a port named vif1.0 already exists on bridge xenbr0"),
        (["add-port", "xenbr0", "vif9.0"], "vif9.0' does not exist"),
        (["del-port", "nosuch"], "no port named nosuch"),
        (["list-ports", "nosuch"], "no bridge named nosuch"),
        (["get", "Open_vSwitch", ".", "external_ids"], 'unknown table "Open_vSwitch"'),
        (["set", "Interface", "xenbr0", "external_ids:a=b"], "cannot be changed here"),
        (["add-br", "xenbr0", "xenbr1"], "takes exactly 1 or 3 arguments"),
    ]
    for line, message in cases:
        with pytest.raises(VsctlError, match=message.replace("(", r"\(").replace(")", r"\)")):
            run(line)
    with pytest.raises(VsctlError) as err:
        run(["br-exists", "nosuch"])
    assert err.value.code == 2


def test_may_exist_and_if_exists():
    ctx, _outputs = run(["--may-exist", "add-port", "xenbr0", "vif1.0", "--", "--if-exists", "del-port", "vif9.0", "--",
                         "--may-exist", "add-br", "xenbr0"])
    assert ctx.changes == []
    ctx, out = run(["add-br", "xenbr0.5", "xenbr0", "5", "--", "br-to-vlan", "xenbr0.5", "--", "br-to-parent",
                    "xenbr0.5", "--", "list-br", "--", "del-br", "xenbr0", "--", "list-br"])
    assert out == ["5", "xenbr0", "xenbr0\nxenbr0.5"] and ctx.state.bridges == {}


def test_list_formats():
    opts = {**OPTS, "format": "table"}
    ctx = Context(state(), FEATURES)
    cmd = syntax.parse_command_line(["--columns=name,type", "list", "Interface", "vif1.0", "xenbr0"]).commands[0]
    assert commands.db_list(ctx, cmd, opts) == 'name   type\n------ --------\nvif1.0 ""\nxenbr0 internal'
    assert commands.db_list(ctx, cmd, {**opts, "format": "json"}) == \
        '{"data":[["vif1.0",""],["xenbr0","internal"]],"headings":["name","type"]}'
    assert commands.db_list(ctx, cmd, {**OPTS, "bare": True}) == "vif1.0\n\n\nxenbr0\ninternal"
