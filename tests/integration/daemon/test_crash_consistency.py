"""The host matches what vswitchd says: after a failed transaction, and after a crash at any step."""
from __future__ import annotations

import pytest
from vswitch.errors import NotFoundError
from vswitch.rtnl import dump_links
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
