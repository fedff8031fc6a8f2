"""The host matches what vswitchd says: after a failed transaction, and after a crash at any step."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
from vswitch.daemon.faults import ENV, POINTS
from vswitch.errors import BackendError, NotFoundError
from vswitch.rtnl import dump_links
from vswitchd_lab import ENV as ENV_BASE
from vswitchd_lab import ch

pytestmark = pytest.mark.integration


def links(netlab, ns: str) -> set[str]:
    out = netlab.run(ns, "ip", "-o", "link", "show").stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}


def test_a_failed_transaction_replies_only_after_its_taps_are_gone(netlab, vswitchd):
    sw = netlab.ns("sw")
    d = vswitchd(sw)
    d.transact(ch("add_bridge", "br0"))
    before = links(netlab, sw)
    taps = [f"vif{i}.0" for i in range(300)]
    with pytest.raises(NotFoundError):
        # 300 TAPs are created, then the missing system port fails the whole transaction.
        d.transact(*[ch("add_port", name, bridge="br0", type="tap") for name in taps],
                   ch("add_port", "nosuch0", bridge="br0"))
    # Read at once, in this process (one netlink dump, no `ip` to start): the reply said nothing was changed.
    left = {link.name for link in dump_links(sw)} & set(taps)
    assert not left, f"{len(left)} TAPs of the failed transaction still exist after its error reply"
    assert links(netlab, sw) == before
    assert set(d.call("get_state")["ports"]) == set()


def taps(ns: str) -> set[str]:
    return {link.name for link in dump_links(ns) if link.kind == "tun"}


def committed_devices(daemon) -> set[str]:
    data = json.loads(daemon.state_file.read_text())
    return set(data["bridges"]) | {name for name, port in data["ports"].items() if port["type"] != "system"}


# The transaction every crash interrupts: it deletes a bridge with a port and two ports, changes an
# existing bridge's MTU, and creates a bridge and three ports, so every step boundary is on its path.
BASE = [ch("add_bridge", "br0"), ch("add_bridge", "xapi1"),
        *[ch("add_port", f"a{i}", bridge="br0", type="tap") for i in range(4)],
        ch("add_port", "x0", bridge="xapi1", type="tap"), ch("add_port", "p1", bridge="br0")]
CHANGE = [ch("del_bridge", "xapi1"), ch("del_port", "a0", bridge="br0"), ch("del_port", "a1", bridge="br0"),
          ch("set_bridge", "br0", mtu=1400), ch("add_bridge", "br1"),
          ch("add_port", "b0", bridge="br0", type="tap"), ch("add_port", "b1", bridge="br1", type="tap"),
          ch("add_port", "b2", bridge="br1", type="internal")]
CRASHES = [*POINTS, "transact.port-opened@2", "commit.port-dropped@3"]


@pytest.mark.parametrize("crash_at", CRASHES)
def test_a_crash_at_any_step_leaves_exactly_the_committed_taps_after_restart(netlab, vswitchd, tmp_path, crash_at):
    sw = netlab.ns("sw")
    h1 = netlab.ns("h1")
    netlab.link(sw, "p1", h1, "eth0")
    # A persistent TAP vswitchd did not create, and one with a name vswitchd's state does not hold.
    netlab.run(sw, "ip", "tuntap", "add", "dev", "dmforeign0", "mode", "tap")
    d = vswitchd(sw)
    d.transact(*BASE)
    old = json.loads(d.state_file.read_text())
    d.stop()
    d.env = {ENV: crash_at}
    d.start()
    with pytest.raises(BackendError):   # the daemon dies mid-transaction: no reply
        d.transact(*CHANGE)
    assert d.proc.wait(10) == -signal.SIGKILL, f"vswitchd did not crash at {crash_at}"
    d.env = {}
    d.start()
    on_disk = json.loads(d.state_file.read_text())
    before_commit = ("transact.validated", "transact.internal-created", "transact.settings-changed",
                     "transact.port-opened")
    committed = crash_at.split("@")[0] not in before_commit
    if committed:
        assert set(on_disk["bridges"]) == {"br0", "br1"}
        assert set(on_disk["ports"]) == {"a2", "a3", "p1", "b0", "b1", "b2"}
    else:
        assert (on_disk["bridges"], on_disk["ports"]) == (old["bridges"], old["ports"])
    present = taps(sw)
    assert present == committed_devices(d) | {"dmforeign0"}, \
        f"crash at {crash_at}: TAPs {sorted(present)} but the state holds {sorted(committed_devices(d))}"
    state = d.call("get_state")
    assert all(port["status"] == "ok" for port in state["ports"].values())
    mtu = netlab.run(sw, "cat", "/sys/class/net/br0/mtu").stdout.strip()
    assert mtu == str(on_disk["bridges"]["br0"]["mtu"]), "the bridge's MTU is what the state says"
    # Retrying the transaction after an uncommitted crash applies it, as on a fresh host.
    if not committed:
        d.transact(*CHANGE)
        deadline = time.monotonic() + 10   # deleted ports' TAPs are released just after the reply
        while taps(sw) != committed_devices(d) | {"dmforeign0"}:
            assert time.monotonic() < deadline, f"after the retry: TAPs {sorted(taps(sw))}"
            time.sleep(0.05)
    netlab.run(sw, "ip", "tuntap", "del", "dev", "dmforeign0", "mode", "tap")


def test_a_bad_crash_point_is_refused_at_start(tmp_path):
    env = {**ENV_BASE, ENV: "transact.nonsense"}
    proc = subprocess.run([sys.executable, "-m", "vswitch.daemon", "--state-file", str(tmp_path / "s.json"),
                           "--socket", str(tmp_path / "s.sock")], env=env, capture_output=True, text=True,
                          timeout=30, check=False)
    assert proc.returncode == 1 and "is not a crash point" in proc.stderr
