"""vswitchd's GSO tc path with 802.1Q-tagged super-frames (run inside tests/vmkernel/vm.py).

Not collected by a plain ``pytest tests`` run (the name does not match ``test_*.py``): a tagged TCP
flow needs an 802.1Q device at one end, which this machine's kernel lacks. Debian's kernel in the
guest has them, and no tcx links (6.1), so the tc program is a clsact filter there.
tests/integration/test_kernel_vlan_filtering.py boots it and runs this file; by hand::

    python3 tests/vmkernel/vm.py -- .venv/bin/python -m pytest -p no:cacheprovider \
        tests/integration/daemon/kernel_fastpath_checks.py

h1 sits on a trunk port and talks through its VLAN device eth0.10; h2 on an access port of VLAN
10. A stream each way: h1 -> h2 arrives tagged and leaves untagged (tc pops), h2 -> h1 arrives
untagged and leaves tagged (tc pushes). The proof is the streams' bytes and the tc counters.
"""
from __future__ import annotations

import pytest
from test_fastpath import gso_attachment
from vswitchd_lab import Daemon, ch, tcp_stream

NETLAB_PREFIX = "xq"   # this area's namespaces (tests/conftest.py)
pytestmark = pytest.mark.integration
SIZE = 20 * 2**20


def test_tagged_super_frames_are_popped_and_pushed_by_tc(netlab, daemons, tmp_path):
    sw, h1, h2 = netlab.ns("sw"), netlab.ns("h1"), netlab.ns("h2")
    netlab.link(sw, "p1", h1, "eth0")
    netlab.link(sw, "p2", h2, "eth0")
    # The tag inline in the frames h1 sends (as a VM's netback VIF or TAP delivers them), not in the skb's
    # metadata: generic XDP cannot see a tag there (docs/vswitchd_fastpath.md, Limits).
    netlab.run(h1, "ethtool", "-K", "eth0", "txvlan", "off")
    netlab.run(h1, "ip", "link", "add", "link", "eth0", "name", "eth0.10", "type", "vlan", "id", "10")
    netlab.run(h1, "ip", "addr", "add", "10.0.10.1/24", "dev", "eth0.10")
    netlab.run(h1, "ip", "link", "set", "eth0.10", "up")
    netlab.run(h2, "ip", "addr", "add", "10.0.10.2/24", "dev", "eth0")
    d = Daemon(sw, tmp_path, env={"VSWITCHD_DATAPATH": "auto"})
    daemons.append(d)
    d.start()
    d.transact(ch("add_bridge", "br0"), ch("add_port", "p1", bridge="br0", trunks=[10]),
               ch("add_port", "p2", bridge="br0", vlan=10))
    assert gso_attachment(d, "p1") in ("tcx", "clsact"), d.ctl("show").stdout
    assert netlab.ping_until(h1, "10.0.10.2"), (d.stats("p1"), d.stats("p2"))
    for src, dst, address, ingress, egress in ((h1, h2, "10.0.10.2", "p1", "p2"), (h2, h1, "10.0.10.1", "p2", "p1")):
        before_in, before_out = d.stats(ingress), d.stats(egress)
        tcp_stream(netlab, src, dst, address, SIZE)
        got_in, got_out = d.stats(ingress), d.stats(egress)
        carried = got_in["tc_rx_bytes"] - before_in["tc_rx_bytes"]
        print(f"{ingress} -> {egress}: {carried} of {SIZE} bytes by tc, "
              f"{got_in['slow_rx_packets'] - before_in['slow_rx_packets']} frames by Python")
        assert carried >= 0.8 * SIZE, (got_in, before_in)
        assert got_out["tc_tx_packets"] - before_out["tc_tx_packets"] == \
            got_in["tc_rx_packets"] - before_in["tc_rx_packets"]
