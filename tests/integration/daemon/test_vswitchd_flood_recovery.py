"""A 64-byte flood through vswitchd must never leave a port deaf (receive ring stranded)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from vswitchd_lab import ch, mac_of, star

pytestmark = pytest.mark.integration
BLASTER = Path(__file__).resolve().parents[3] / "bench" / "vswitchd_forwarding.py"


def test_port_forwards_after_repeated_floods(vswitchd, netlab):
    sw = netlab.ns("sw")
    daemon = vswitchd(sw)
    h1, h2 = star(netlab, sw, 2)
    daemon.transact(ch("add_bridge", "br0"), ch("add_port", "p1", bridge="br0"), ch("add_port", "p2", bridge="br0"))
    assert netlab.ping_until(h1, "10.0.0.2")
    h2_mac = mac_of(netlab, h2, "eth0")
    for round_ in range(5):
        # About half a million 64-byte frames a second from a transmit ring, for 3 s (bounded).
        blast = subprocess.run(["ip", "netns", "exec", h1, sys.executable, str(BLASTER), "--helper", "blast", "eth0",
                                h2_mac, "10.0.0.2", "3"], capture_output=True, text=True, timeout=60,
                               check=False)
        assert blast.returncode == 0, blast.stderr
        assert netlab.ping_until(h1, "10.0.0.2", attempts=10), f"p1 stopped forwarding after flood {round_ + 1}"
    stats = {row["port"]: row for row in daemon.call("port_stats")}
    assert stats["p1"]["rx_packets"] > 100_000
