"""The kernel datapath with the pyroute2 a managed host's distribution ships, and with one too old.

Debian 12's own python3-pyroute2 (0.7.2) is fetched with `apt-get download` and unpacked, not
installed; Debian 11's 0.5.14 (the kernel datapath's stated minimum) is built from its PyPI sdist
into a directory of its own (this machine's apt knows only Debian 12). The modules then run through
Ansible with that pyroute2 first on PYTHONPATH, so they import it instead of the venv's 0.9. The
Molecule scenarios on Debian 11 and 13 (tests/molecule) run them with the packages as installed there.
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
OLDEST = "0.5.14"   # Debian 11's python3-pyroute2


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


@pytest.fixture(scope="module")
def oldest_pyroute2() -> Path:
    """pyroute2 0.5.14 (Debian 11's) from its PyPI sdist, installed into .cache/pyroute2/0.5.14/ alone."""
    tree = CACHE / OLDEST
    if not (tree / "pyroute2").is_dir():
        partial = CACHE / f"{OLDEST}.partial"
        subprocess.run(["rm", "-rf", str(partial)], check=True)
        got = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
                              "--target", str(partial), f"pyroute2=={OLDEST}"],
                             capture_output=True, text=True, timeout=300, check=False)
        if got.returncode != 0:
            pytest.fail(f"pip install pyroute2=={OLDEST} failed: {got.stderr[-2000:]}")
        partial.rename(tree)
    return tree


def test_debian_pyroute2_drives_bridges_and_ports(hv, debian_pyroute2):
    drive_bridges_and_ports(hv, debian_pyroute2, "0.7.2")


def test_the_oldest_pyroute2_drives_bridges_and_ports(hv, oldest_pyroute2):
    assert NEEDED == OLDEST
    drive_bridges_and_ports(hv, oldest_pyroute2, OLDEST)


def drive_bridges_and_ports(hv, tree: Path, version: str) -> None:
    hv.env = dict(hv.env, PYTHONPATH=str(tree))
    seen = pyroute2_seen(hv.env)
    assert seen.startswith(version + " ") and str(tree) in seen, seen   # that pyroute2, not the venv's
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
    # A pyroute2 that says it is 0.4.21 (Ubuntu 18.04's): the check reads the package metadata, as pip
    # and dpkg both install it.
    (tmp_path / "pyroute2").mkdir()
    (tmp_path / "pyroute2" / "__init__.py").write_text("")
    meta = tmp_path / "pyroute2-0.4.21.dist-info"
    meta.mkdir()
    (meta / "METADATA").write_text("Metadata-Version: 2.1\nName: pyroute2\nVersion: 0.4.21\n")
    hv.env = dict(hv.env, PYTHONPATH=str(tmp_path))
    before = hv.links()
    failed = hv.module("vswitch_bridge", name="xenbr0", stp=False)
    assert failed.get("failed"), failed
    assert "pyroute2: '0.4.21' is too old for the kernel datapath" in failed["msg"], failed["msg"]
    assert f">= {NEEDED}" in failed["msg"], failed["msg"]
    assert json.dumps(hv.links(), sort_keys=True) == json.dumps(before, sort_keys=True)
