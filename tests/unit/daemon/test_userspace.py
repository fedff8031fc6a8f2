from __future__ import annotations

import pytest
from vswitch import paths
from vswitch.daemon.config import Config, apply_changes
from vswitch.model import BridgeSpec, HostState, PortSpec
from vswitch.plan import plan_bridge, plan_ports
from vswitch.rpc import DaemonUnavailable
from vswitch.userspace import FEATURES, UserspaceBackend, open_userspace


class FakeDaemon:
    """Answers like vswitchd, applying transactions with the daemon's own config code."""

    def __init__(self) -> None:
        self.config = Config()
        self.calls: list[tuple[str, dict]] = []

    def call(self, method, params=None):
        self.calls.append((method, params))
        if method == "transact":
            self.config = apply_changes(self.config, params["changes"])
            return {"changed": True}
        if method == "get_state":
            bridges = {name: {**b, "mac": b["mac"] or "02:00:00:00:00:aa", "ports": self.config.ports_of(name),
                              "uplink": self.config.uplink_of(name), "status": "ok"}
                       for name, b in self.config.bridges.items()}
            return {"bridges": bridges, "ports": {n: {**p, "status": "ok"} for n, p in self.config.ports.items()},
                    "links": ["lo", "eth0"]}
        if method == "fdb_show":
            return [{"bridge": "xenbr0", "port": "vif1.0", "vlan": 10, "mac": "00:16:3e:00:00:01", "age": 3,
                     "static": False, "local": False}]
        raise AssertionError(method)


def test_plan_apply_read_round_trip_is_idempotent():
    daemon = FakeDaemon()
    backend = UserspaceBackend(daemon)
    assert backend.datapath == "userspace" and backend.features == FEATURES
    state = backend.read()
    state = HostState(bridges=state.bridges, ports=state.ports, datapaths=("kernel", "userspace"))
    bridge = BridgeSpec.from_params({"name": "xenbr0", "datapath": "userspace", "ageing_time": 0})
    backend.apply(plan_bridge(bridge, state))
    state = HostState(bridges=backend.read().bridges, datapaths=("kernel", "userspace"))
    specs = [PortSpec.from_params({"name": f"vif{i}.0", "bridge": "xenbr0", "type": "tap", "trunks": "10-20",
                                   "native_vlan": 10}) for i in range(50)]
    changes = plan_ports(specs, state, {"userspace": FEATURES})
    daemon.calls.clear()
    backend.apply(changes)
    assert [m for m, _params in daemon.calls] == ["transact"], "a whole plan is one transaction"
    after = backend.read()
    assert after.bridges["xenbr0"].datapath == "userspace"
    assert after.bridges["xenbr0"].ageing_time == 0
    assert after.ports["vif7.0"].trunks == tuple(range(10, 21))
    assert plan_ports(specs, HostState(bridges=after.bridges, ports=after.ports, datapaths=("userspace",)),
                      {"userspace": FEATURES}) == []
    assert plan_bridge(bridge, HostState(bridges=after.bridges, datapaths=("userspace",))) == []


def test_fdb_and_links():
    backend = UserspaceBackend(FakeDaemon(), include_links=True)
    entry = backend.fdb("xenbr0")[0]
    assert (entry.port, entry.vlan, entry.mac, entry.age) == ("vif1.0", 10, "00:16:3e:00:00:01", 3)
    assert set(backend.read().links) == {"lo", "eth0"}
    assert UserspaceBackend(FakeDaemon()).read().links == {}


def test_open_userspace_without_the_default_socket_is_none(tmp_path, monkeypatch):
    # No socket named for the run and none at the default path: a kernel-only host, not an error.
    monkeypatch.delenv("VSWITCHD_SOCKET", raising=False)
    monkeypatch.setattr(paths, "SOCKET", str(tmp_path / "default.sock"))
    assert open_userspace() is None
    (tmp_path / "present.sock").touch()
    assert open_userspace(str(tmp_path / "present.sock")) is not None


def test_open_userspace_with_a_configured_socket_missing_says_so(tmp_path, monkeypatch):
    missing = str(tmp_path / "missing.sock")
    monkeypatch.setenv("VSWITCHD_SOCKET", missing)
    with pytest.raises(DaemonUnavailable) as err:
        open_userspace()
    assert (err.value.field, err.value.value) == ("vswitchd_socket", missing)
    assert "vswitchd is not running there" in err.value.message


def test_a_configured_socket_that_does_not_answer_fails_on_read_naming_it(tmp_path, monkeypatch):
    import socket

    stale = tmp_path / "stale.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(stale))
    listener.close()  # the file stays, nobody listens: a daemon that died
    monkeypatch.setenv("VSWITCHD_SOCKET", str(stale))
    backend = open_userspace()
    with pytest.raises(DaemonUnavailable) as err:
        backend.read()
    assert err.value.value == str(stale) and "cannot be reached" in err.value.message
