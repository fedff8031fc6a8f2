"""scripts/lab.sh as a new user meets it: its verbs, a fresh clone, a fresh shell, and the README's commands.

The lab here is private (OPENVIF_LAB_PREFIX, which labctl and the lab inventory both read), so it
never touches a lab the user has up. Every shell starts from a near-empty environment (no .venv on
PATH, no ANSIBLE_CONFIG), as a new terminal would.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
LAB_SH = ROOT / "scripts" / "lab.sh"
MARK = "<!-- lab-test"


def fresh_env(prefix: str) -> dict[str, str]:
    """A new login shell's environment: system PATH only, nothing of this venv or of pytest's run."""
    return {"HOME": os.environ.get("HOME", "/root"), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
            "OPENVIF_LAB_PREFIX": prefix}


def sh(script: str, prefix: str, cwd: Path = ROOT, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=fresh_env(prefix),
                          capture_output=True, text=True, timeout=timeout, check=False)


def readme_lab_blocks(text: str) -> list[str]:
    """The ```sh blocks the README marks as running against the lab, in order."""
    return re.findall(r"^<!-- lab-test[^\n]*-->\n```sh\n(.*?)^```", text, re.MULTILINE | re.DOTALL)


@pytest.fixture(scope="module")
def fresh_clone(tmp_path_factory) -> Path:
    """The checkout's tracked files only: no .venv, no .cache, as after `git clone`."""
    clone = tmp_path_factory.mktemp("clone")
    files = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        source, target = ROOT / name, clone / name
        if source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    assert not (clone / ".venv").exists()
    return clone


@pytest.fixture(scope="module")
def lab(fresh_clone) -> Iterator[tuple[str, subprocess.CompletedProcess]]:
    if os.geteuid() != 0:
        pytest.fail("the lab needs root (network namespaces); run scripts/test.sh as root")
    prefix = "lc" + uuid.uuid4().hex[:5]
    try:
        built = sh(f"{LAB_SH} up", prefix)
        assert built.returncode == 0, built.stdout[-4000:] + built.stderr[-4000:]
        yield prefix, built
    finally:
        # Taken down from the fresh clone, which has no .venv: the lab of another checkout must go too.
        gone = sh("scripts/lab.sh down", prefix, cwd=fresh_clone)
        (ROOT / ".cache" / "lab" / f"{prefix}-vif_mac_registry.yml").unlink(missing_ok=True)
        assert gone.returncode == 0, gone.stderr
        assert not [n for n in os.listdir("/run/netns") if n.startswith(prefix + "-")]


@pytest.mark.quick
def test_help_and_unknown_arguments():
    shown = sh(f"{LAB_SH} --help", "lcnone")
    assert shown.returncode == 0 and "usage: scripts/lab.sh [up|down|status|prove|--help]" in shown.stdout
    for bad in ("--bogus", "start", "up extra"):
        wrong = sh(f"{LAB_SH} {bad}", "lcnone")
        assert wrong.returncode == 2, (bad, wrong.stdout, wrong.stderr)
        assert "usage:" in wrong.stderr and wrong.stdout == "", bad   # nothing started


@pytest.mark.quick
def test_down_and_status_work_in_a_fresh_clone_without_a_venv(fresh_clone):
    prefix = "lcn" + uuid.uuid4().hex[:4]
    status = sh("scripts/lab.sh status", prefix, cwd=fresh_clone)
    assert status.returncode == 3, status.stdout + status.stderr
    assert f"no namespaces {prefix}-*" in status.stdout
    down = sh("scripts/lab.sh down", prefix, cwd=fresh_clone)
    assert down.returncode == 0 and "lab down" in down.stdout, down.stderr
    prove = sh("scripts/lab.sh prove", prefix, cwd=fresh_clone)
    assert prove.returncode == 1 and "scripts/lab.sh up" in prove.stderr


@pytest.mark.quick
def test_labctl_status_needs_no_pyyaml():
    # -S: no site-packages, so no PyYAML, as with a fresh machine's python3 before bootstrap
    done = subprocess.run([sys.executable, "-S", str(ROOT / "scripts/lab/labctl.py"), "status", "--prefix", "lcnoyaml"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 3 and "no namespaces lcnoyaml-*" in done.stdout, done.stderr


def test_up_then_status_and_prove(lab):
    prefix, built = lab
    assert "lab proof: every VM reaches what it should and nothing else" in built.stdout
    # Every VM NIC carries the MAC the vif_mac role assigned, and prove says so.
    nics = re.findall(r"^(vm\d+)\s+(eth\d)\s+(\S+)\s+(.*)$", built.stdout, re.MULTILINE)
    assert len(nics) == 10 and all(src.startswith("vif_mac registry") for *_fields, src in nics), built.stdout
    assert all(mac.startswith("00:16:3e:") for _host, _nic, mac, _source in nics)
    status = sh(f"{LAB_SH} status", prefix)
    assert status.returncode == 0, status.stdout + status.stderr
    daemon = re.search(rf"^{prefix}-hv3: .*\[vswitchd pid (\d+)", status.stdout, re.MULTILINE)
    assert daemon, status.stdout
    # The daemon is listed by its name (pgrep, ps, top), not as python3.
    assert Path(f"/proc/{daemon.group(1)}/comm").read_text().strip() == "vswitchd"
    listed = subprocess.run(["pgrep", "-x", "vswitchd"], capture_output=True, text=True, check=False)
    assert daemon.group(1) in listed.stdout.split()
    proof = sh(f"{LAB_SH} prove", prefix)
    assert proof.returncode == 0 and "every VM reaches what it should" in proof.stdout, proof.stdout


def test_the_closing_hints_work_as_printed_in_a_fresh_shell(lab, tmp_path):
    prefix, built = lab
    hints = [line.strip() for line in built.stdout.splitlines() if line.startswith("  . ")]
    assert len(hints) == 2, built.stdout[-2000:]
    for hint in hints:
        ran = sh(hint, prefix, cwd=tmp_path)   # not the checkout: the hint must not depend on the directory
        assert ran.returncode == 0, (hint, ran.stdout[-2000:], ran.stderr[-2000:])
    assert "xenbr0" in sh(hints[1], prefix, cwd=tmp_path).stdout


def test_adhoc_sees_what_the_playbook_sees_on_a_vswitchd_host(lab):
    prefix, _lab_env = lab
    ran = sh(". scripts/env.sh && ansible hv3 -m vswitch_info -a fdb=false -o", prefix)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert '"datapath": "userspace"' in ran.stdout and "xapi5" in ran.stdout, ran.stdout
    # The same host with its socket pointing nowhere: an error that names the path, not a kernel-only read.
    wrong = sh(". scripts/env.sh && ansible hv3 -m vswitch_info -e vswitchd_socket=/run/openvif-lab/none.sock", prefix)
    assert wrong.returncode != 0 and "/run/openvif-lab/none.sock" in wrong.stdout + wrong.stderr, wrong.stdout


def test_every_lab_command_in_the_readme_works_as_printed(lab):
    prefix, _lab_env = lab
    text = (ROOT / "README.md").read_text()
    blocks = readme_lab_blocks(text)
    assert len(blocks) == text.count(MARK) >= 2, "a lab-test marker is not followed by a ```sh block"
    # Every sh block that talks to a lab host is one the test runs.
    for block in re.findall(r"^```sh\n(.*?)^```", text, re.MULTILINE | re.DOTALL):
        if re.search(r"\b(ansible|vswitchctl)\b.*\bhv\d", block):
            assert block in blocks, f"README block runs against the lab but is not marked {MARK}:\n{block}"
    script = "\n".join(f"echo '=== README block {i}'\n{block}" for i, block in enumerate(blocks, 1))
    ran = sh(script, prefix)   # one fresh shell, in order, as a reader follows the README
    assert ran.returncode == 0, ran.stdout[-4000:] + ran.stderr[-4000:]
    assert ran.stdout.count("=== README block") == len(blocks)


@pytest.mark.quick
def test_test_sh_clean_removes_the_molecule_store_and_its_mounts(tmp_path):
    if os.geteuid() != 0:
        pytest.fail("mounting needs root; run scripts/test.sh as root")
    base = tmp_path / "molecule"
    mount = base / "storage" / "graph" / "overlay" / "x" / "merged"
    mount.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "fhclean", str(mount)], check=True)
    (mount / "file").write_text("inside the mount")
    (base / "images.tar").write_text("cache")
    env = {**fresh_env("lcnone"), "OPENVIF_MOLECULE_BASE": str(base)}
    try:
        done = subprocess.run([str(ROOT / "scripts/test.sh"), "--clean"], env=env, capture_output=True, text=True,
                              timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        assert f"removed {base}" in done.stdout and not base.exists()
        assert str(mount) not in Path("/proc/self/mounts").read_text()
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True, check=False)
