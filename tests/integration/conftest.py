from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from ansible_runner import run_module, write_inventory  # noqa: E402
from netlab import link_witness  # noqa: E402


class HostUnderTest:
    """One namespace 'hypervisor' that modules target through the netns connection."""

    def __init__(self, lab, env, tmp: Path) -> None:
        self.lab = lab
        self.state_dir = tmp / "state"   # this host's own declaration (OPENVIF_STATE_DIR)
        self.env = dict(env, OPENVIF_STATE_DIR=str(self.state_dir))
        self.ns = lab.ns("hv")
        self.inventory = write_inventory(tmp, {"hv": self.ns}, sys.executable)

    def module(self, module: str, check: bool = False, **args):
        return run_module(self.env, self.inventory, "hv", f"openvif.vswitch.{module}", args, check=check)

    def links(self) -> dict:
        """Everything the kernel says about this host's links: the 'host unchanged' witness."""
        return link_witness(self.ns)

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
