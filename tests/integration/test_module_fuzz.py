"""Property-based fuzz of the modules' arguments, in-process, against a namespace host.

Every call either succeeds or fails with a VswitchError that names a field of the request
(the message begins with it); after every failed call the host's links and settings are
exactly as before. Bounded: a small profile for the developer loop, a larger one in the suite.
"""
from __future__ import annotations

import math

import pytest
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch import actions
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.errors import VswitchError
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.host import Host
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.kernel import KernelBackend
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from netlab import link_witness

pytestmark = [pytest.mark.integration]

NAMES = ["xenbr0", "xapi1", "peth0", "vif1.0", "vif2.0", "nosuch0", "", "x" * 16, "bad name", "a/b", "..", "ä"]
VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
    st.sampled_from([0, 1, 5, 68, 1500, 4094, 4095, 9000, 65536, 1_000_001]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["inf", "-inf", "Infinity", "nan", "1e9", "5", "10-20", "5-7,100", "1,,2", "20-10", "0",
                     "00:16:3e:00:00:01", "01:00:5e:00:00:01", "ff:ff:ff:ff:ff:ff", "zz", "system", "tap", "internal"]),
    st.sampled_from(NAMES), st.text(max_size=20),
    st.lists(st.integers(min_value=-5, max_value=5000), max_size=4), st.dictionaries(st.text(max_size=5),
                                                                                     st.text(max_size=5), max_size=3),
)
BRIDGE_OPTIONS = ["name", "datapath", "stp", "forward_delay", "ageing_time", "mtu", "mac", "uplink", "state"]
PORT_OPTIONS = ["name", "bridge", "type", "vlan", "trunks", "native_vlan", "mac", "promiscuous", "external_ids",
                "state", "purge", "move"]


def params(options: list[str]):
    entry = st.dictionaries(st.sampled_from(options + ["bogus"]), VALUES, max_size=5)
    return st.fixed_dictionaries({"name": st.sampled_from(NAMES)},
                                 optional={key: VALUES for key in options if key != "name"}) | \
        st.fixed_dictionaries({"bridges" if "uplink" in options else "ports": st.lists(
            st.one_of(entry, st.sampled_from(NAMES), VALUES), max_size=3)})


@pytest.fixture
def host(netlab):
    ns = netlab.ns("fz")
    for name in ("peth0", "vif1.0", "vif2.0"):
        netlab.link(ns, name, netlab.ns("p" + name.replace(".", "")), "eth0")
    backend = KernelBackend(netns=ns)
    host = Host([backend])
    actions.bridge({"name": "xenbr0", "uplink": "peth0", "state": "present"}, host, False)
    actions.bridge({"name": "xapi1", "state": "present"}, host, False)
    actions.port({"bridge": "xapi1", "name": "vif1.0"}, host, False)
    try:
        yield ns, host
    finally:
        backend.close()


def check_call(witness, host: Host, action, request: dict) -> None:
    before = witness()
    request.setdefault("state", "present")
    try:
        action(request, host, False)
    except VswitchError as err:
        assert err.field, f"{request}: error names no field: {err.message}"
        assert err.message.startswith(err.field.split(".")[0].split("[")[0]), (request, err.message)
        assert witness() == before, f"{request} failed ({err.message}) and changed the host"
    except Exception as err:  # noqa: BLE001 - the property: nothing else may escape
        raise AssertionError(f"{request}: {type(err).__name__}: {err} (not a clean, named error)") from err


def run_fuzz(host, examples: int) -> None:
    ns, kernel_host = host
    bridge_params, port_params = params(BRIDGE_OPTIONS), params(PORT_OPTIONS)

    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(st.one_of(bridge_params.map(lambda p: (actions.bridge, p)), port_params.map(lambda p: (actions.port, p))))
    def one_call(call):
        action, request = call
        check_call(lambda: link_witness(ns), kernel_host, action, dict(request))
    one_call()


@pytest.mark.quick
def test_fuzz_small_profile(host):
    run_fuzz(host, 40)


@pytest.mark.slow
def test_fuzz_full_profile(host):
    run_fuzz(host, 400)


def test_the_property_can_fail():
    """The checker itself reports an error without a field, a crash, and a failed call that changed the host."""
    def unnamed(*_args):
        raise VswitchError("", None, "no field")

    def crash(*_args):
        return math.floor(float("inf"))

    def changes_then_fails(*_args):
        host_links.append("new")
        raise VswitchError("mtu", 1, "is out of range")

    host_links: list[str] = []
    with pytest.raises(AssertionError, match="names no field"):
        check_call(lambda: list(host_links), None, unnamed, {})
    with pytest.raises(AssertionError, match="not a clean, named error"):
        check_call(lambda: list(host_links), None, crash, {})
    with pytest.raises(AssertionError, match="changed the host"):
        check_call(lambda: list(host_links), None, changes_then_fails, {})
