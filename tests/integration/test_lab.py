"""The main job, as the README runs it: build the lab, site.yml twice, prove who reaches whom."""
from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from ansible_runner import run_playbook

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def labctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts/lab/labctl.py"), *args],
                          capture_output=True, text=True, timeout=300, check=False)


def test_site_converges_is_idempotent_and_networks_behave_as_declared(ansible_env, netlab):
    # netlab: fails loudly without root/namespaces; the lab itself is built by labctl, as users do
    prefix = "lt" + uuid.uuid4().hex[:5]
    try:
        built = labctl("up", "--prefix", prefix)
        assert built.returncode == 0, built.stderr
        inventory = ROOT / "inventories/lab/hosts.yml"
        site = ROOT / "playbooks/site.yml"
        rc, out, stats = run_playbook(ansible_env, inventory, site, "-e", f"lab_prefix={prefix}")
        assert rc == 0, out
        assert all(stats[hv]["changed"] >= 2 for hv in ("hv1", "hv2", "hv3", "hv4")), out

        proof = labctl("prove", "--prefix", prefix)
        print(proof.stdout)
        assert proof.returncode == 0, proof.stdout + proof.stderr
        assert "every VM reaches what it should and nothing else" in proof.stdout

        rc, out, stats = run_playbook(ansible_env, inventory, site, "-e", f"lab_prefix={prefix}")
        assert rc == 0, out
        assert all(stats[hv]["changed"] == 0 for hv in ("hv1", "hv2", "hv3", "hv4")), out
        assert "DUPLICATE" not in out, out

        check_rc, out, stats = run_playbook(ansible_env, inventory, site, "-e", f"lab_prefix={prefix}", "--check")
        assert check_rc == 0 and stats["hv1"]["changed"] == 0, out
    finally:
        labctl("down", "--prefix", prefix)
        (ROOT / ".cache" / "lab" / f"{prefix}-vif_mac_registry.yml").unlink(missing_ok=True)
        (ROOT / ".cache" / "lab" / f"{prefix}-vif_mac_registry.yml.lock").unlink(missing_ok=True)  # the registry's lock
