from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from ansible_runner import run_module, write_inventory  # noqa: E402
from netlab import sh  # noqa: E402


class HostUnderTest:
    """One namespace 'hypervisor' that modules target through the netns connection."""

    def __init__(self, lab, env, tmp: Path) -> None:
        self.lab = lab
        self.env = env
        self.ns = lab.ns("hv")
        self.inventory = write_inventory(tmp, {"hv": self.ns}, sys.executable)

    def module(self, module: str, check: bool = False, **args):
        return run_module(self.env, self.inventory, "hv", f"openvif.vswitch.{module}", args, check=check)

    def links(self) -> dict:
        """Everything the kernel says about this host's links: the 'host unchanged' witness."""
        out = sh("ip", "-n", self.ns, "-d", "-j", "link", "show").stdout
        import json

        links = json.loads(out)
        for link in links:  # counters, timers and STP port states move on their own: not configuration
            for derived in ("stats64", "tso_max_size", "tso_max_segs", "gso_max_size", "gso_max_segs", "gro_max_size"):
                link.pop(derived, None)  # offload limits follow the current ports
            # Carrier is runtime state the kernel updates asynchronously (linkwatch), not configuration.
            link["flags"] = [f for f in link.get("flags", []) if f not in ("NO-CARRIER", "LOWER_UP")]
            link.pop("operstate", None)
            for section in ("info_data", "info_slave_data"):
                info = link.get("linkinfo", {}).get(section, {})
                for key in [k for k in info if k.endswith("_timer")]:
                    info.pop(key)
            link.get("linkinfo", {}).get("info_slave_data", {}).pop("state", None)
            # STP identifiers derive from the bridge MAC and its ports; a rollback restores the MAC of a
            # bridge that was not pinned, which the kernel then also uses as its bridge id.
            for derived in ("bridge_id", "root_id"):
                link.get("linkinfo", {}).get("info_data", {}).pop(derived, None)
        return {link["ifname"]: link for link in links}

    def veth(self, name: str, peer_role: str = "peer") -> None:
        peer_ns = self.lab.ns(peer_role)
        self.lab.link(self.ns, name, peer_ns, "e" + name.replace(".", "")[:12])


@pytest.fixture
def hv(netlab, ansible_env, tmp_path):
    return HostUnderTest(netlab, ansible_env, tmp_path)


@pytest.fixture(autouse=True)
def _needs_ip():
    if shutil.which("ip") is None:
        pytest.fail("iproute2 missing: run scripts/bootstrap.sh test")
