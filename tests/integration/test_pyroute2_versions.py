"""The kernel datapath with the pyroute2 a managed host's distribution ships, and with one too old.

Debian 12's own python3-pyroute2 (0.7.2, the collection's stated minimum) is fetched with `apt-get
download` and unpacked, not installed; the modules then run through Ansible with it first on
PYTHONPATH, so they import it instead of the venv's 0.9.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "plugins" / "module_utils"))
from vswitch.pyroute2_req import MINIMUM  # noqa: E402

CACHE = ROOT / ".cache" / "pyroute2"
NEEDED = ".".join(map(str, MINIMUM))


def pyroute2_seen(env: dict[str, str]) -> str:
    code = "import importlib.metadata as m, pyroute2; print(m.version('pyroute2'), pyroute2.__file__)"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def debian_pyroute2() -> Path:
    """Debian's python3-pyroute2 for this machine's release, unpacked under .cache/pyroute2/."""
    tree = CACHE / "debian"
    if not (tree / "usr/lib/python3/dist-packages/pyroute2").is_dir():
        CACHE.mkdir(parents=True, exist_ok=True)
        for old in CACHE.glob("python3-pyroute2_*.deb"):
            old.unlink()
        got = subprocess.run(["apt-get", "download", "-q", "python3-pyroute2"], cwd=CACHE, capture_output=True,
                             text=True, timeout=300, check=False)
        if got.returncode != 0:
            pytest.fail(f"apt-get download python3-pyroute2 failed (apt-get update first?): {got.stderr}")
        deb = next(CACHE.glob("python3-pyroute2_*.deb"))
        subprocess.run(["dpkg-deb", "-x", str(deb), str(tree)], check=True, timeout=120)
    return tree / "usr/lib/python3/dist-packages"


def test_debian_pyroute2_drives_bridges_and_ports(hv, debian_pyroute2):
    hv.env = dict(hv.env, PYTHONPATH=str(debian_pyroute2))
    seen = pyroute2_seen(hv.env)
    assert seen.startswith(NEEDED + " ") and str(debian_pyroute2) in seen, seen   # the distribution's, not ours
    hv.veth("peth0")
    hv.veth("vif1.0")
    hv.veth("vif2.0")
    bridge = {"name": "xenbr0", "uplink": "peth0", "stp": False, "forward_delay": 0, "mtu": 1400}
    assert hv.module("vswitch_bridge", check=True, **bridge)["changed"] is True
    first = hv.module("vswitch_bridge", **bridge)
    assert first["changed"] is True and not first.get("failed"), first
    assert hv.module("vswitch_bridge", **bridge)["changed"] is False
    ports = hv.module("vswitch_port", bridge="xenbr0", ports=["vif1.0", "vif2.0"], purge=True)
    assert ports["changed"] is True, ports
    masters = {name: link.get("master") for name, link in hv.links().items()}
    assert masters["peth0"] == masters["vif1.0"] == masters["vif2.0"] == "xenbr0"
    assert hv.module("vswitch_port", bridge="xenbr0", ports=["vif1.0", "vif2.0"], purge=True)["changed"] is False
    info = hv.module("vswitch_info")
    assert info["ansible_facts"]["vswitch"]["bridges"]["xenbr0"]["uplink"] == "peth0"
    gone = hv.module("vswitch_bridge", name="xenbr0", state="absent")
    assert gone["changed"] is True and "xenbr0" not in hv.links()


def test_a_pyroute2_too_old_is_refused_by_name_and_the_host_is_unchanged(hv, tmp_path):
    # A pyroute2 that says it is 0.5.14 (Debian 11's): the check reads the package metadata, as pip
    # and dpkg both install it.
    (tmp_path / "pyroute2").mkdir()
    (tmp_path / "pyroute2" / "__init__.py").write_text("")
    meta = tmp_path / "pyroute2-0.5.14.dist-info"
    meta.mkdir()
    (meta / "METADATA").write_text("Metadata-Version: 2.1\nName: pyroute2\nVersion: 0.5.14\n")
    hv.env = dict(hv.env, PYTHONPATH=str(tmp_path))
    before = hv.links()
    failed = hv.module("vswitch_bridge", name="xenbr0", stp=False)
    assert failed.get("failed"), failed
    assert "pyroute2: '0.5.14' is too old" in failed["msg"] and f">= {NEEDED}" in failed["msg"], failed["msg"]
    assert json.dumps(hv.links(), sort_keys=True) == json.dumps(before, sort_keys=True)
