"""Molecule scenarios (extensions/molecule/*) in podman containers with systemd as PID 1.

Each scenario runs ``molecule test`` through scripts/molecule/run.sh: create, prepare, converge,
idempotence, verify, destroy. Podman, its config, containers.podman and the image are prepared
once by scripts/molecule/setup.sh; if that cannot be done the tests fail with its output, they
never pass or skip silently. Every scenario runs on Debian 12 (bookworm); those in RELEASES also
on the other managed-host releases named there, each in its own debootstrapped image. They run in
the background beside the rest of the suite (tests/molecule_ahead.py, started by tests/conftest.py);
each scenario's test, sorted last, waits for its result.

The last tests check the vswitchd role's pieces the scenario does not vary (the package
archive, the unit for other settings); they are quick and need no podman.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from molecule_ahead import AHEAD, tail

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = sorted(p.parent.name for p in (ROOT / "extensions" / "molecule").glob("*/molecule.yml"))
# Managed hosts as they are (docs/molecule.md): the scenarios that run again on other Debian
# releases, with the release's own python3 and python3-pyroute2 (Debian 11: 3.9 and 0.5.14,
# Debian 13: 3.13 and 0.7.7). Their molecule.yml take the image from OPENVIF_MOLECULE_RELEASE.
RELEASES = {"bullseye": ("kernel", "vswitchd"), "trixie": ("kernel", "vswitchd")}
CASES = [(scenario, "bookworm") for scenario in SCENARIOS] + \
    [(scenario, release) for release, scenarios in RELEASES.items() for scenario in scenarios]


@pytest.mark.molecule
def test_scenarios_found() -> None:
    assert {"kernel", "vswitchd"} <= set(SCENARIOS), f"scenarios found: {SCENARIOS}"
    for release, scenarios in RELEASES.items():
        assert set(scenarios) <= set(SCENARIOS), f"{release}: no such scenario in {SCENARIOS}"
        for scenario in scenarios:   # the image must come from the release, not be written in
            text = (ROOT / "extensions" / "molecule" / scenario / "molecule.yml").read_text()
            assert "${OPENVIF_MOLECULE_IMAGE" in text, f"{scenario}/molecule.yml does not take the release's image"


@pytest.mark.molecule
@pytest.mark.slow
@pytest.mark.runs_ahead
@pytest.mark.parametrize(("scenario", "release"), CASES, ids=[f"{s}-{r}" for s, r in CASES])
def test_molecule_scenario(scenario: str, release: str) -> None:
    # Run in the background since the first test that is not load-sensitive (tests/molecule_ahead.py).
    code, seconds, log = AHEAD.result((scenario, release))
    if code != 0:
        what = "timed out" if code == -9 else f"failed (exit {code})"
        pytest.fail(f"molecule test -s {scenario} on {release} {what} after {seconds:.0f}s. Last lines of {log}:\n"
                    f"{tail(log)}", pytrace=False)
    print(f"molecule test -s {scenario} on {release}: {seconds:.0f}s")


# --- the vswitchd role's pieces that the scenario does not vary (fast, no podman) -------------

ROLE = ROOT / "roles" / "vswitchd"


def _pack(source: Path, archive: Path) -> None:
    subprocess.run([sys.executable, str(ROLE / "files" / "pack_package.py"), str(source), str(archive)],
                   check=True, capture_output=True)


def test_role_package_archive_is_reproducible_and_clean(tmp_path: Path) -> None:
    source = ROOT / "plugins" / "module_utils" / "vswitch"
    copy = tmp_path / "vswitch"
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "__pycache__").mkdir()
    (copy / "__pycache__" / "model.cpython-311.pyc").write_bytes(b"junk")
    os.utime(copy / "model.py", (1, 1))       # mtimes must not matter
    _pack(source, tmp_path / "a.tar")
    _pack(copy, tmp_path / "b.tar")
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    with tarfile.open(tmp_path / "a.tar") as tar:
        names = tar.getnames()
        assert "daemon/__main__.py" in names and "cli.py" in names
        assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
        assert {m.mtime for m in tar.getmembers()} == {0}


def _render_unit(tmp_path: Path, **overrides: str) -> str:
    out = tmp_path / "vswitchd.service"
    extra = " ".join(f"{k}={v}" for k, v in overrides.items())
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".cache" / "collections"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"))
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible"), "localhost", "-m", "ansible.builtin.template",
         "-a", f"src={ROLE / 'templates' / 'vswitchd.service.j2'} dest={out}",
         "-e", f"@{ROLE / 'defaults' / 'main.yml'}", "-e", f"@{ROLE / 'vars' / 'main.yml'}",
         "-e", f"role_path={ROLE} {extra}"],
        capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out.read_text()


def test_role_unit_defaults(tmp_path: Path) -> None:
    unit = _render_unit(tmp_path)
    assert "Type=notify" in unit and "Restart=on-failure" in unit and "WatchdogSec=30" in unit
    assert ("ExecStart=/usr/bin/python3 -m vswitch.daemon --state-file /var/lib/openvif/vswitchd.json "
            "--socket /run/openvif/vswitchd.sock --fdb-limit 8192 --log-level info") in unit
    assert "Environment=PYTHONPATH=/usr/lib/openvif" in unit
    assert "RuntimeDirectory=openvif" in unit and "RuntimeDirectoryPreserve=yes" in unit
    assert "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW" in unit and "ProtectSystem=strict" in unit
    assert "ReadWritePaths=/var/lib/openvif" in unit
    directives = {line.split("=", 1)[0] for line in unit.splitlines() if "=" in line and not line.startswith("#")}
    # these would take /dev/net/tun or AF_PACKET away from the datapath
    assert not directives & {"PrivateDevices", "PrivateNetwork", "DevicePolicy", "ProtectClock"}


def test_role_unit_variants(tmp_path: Path) -> None:
    unit = _render_unit(tmp_path, vswitchd_hardening="false", vswitchd_watchdog_sec="0",
                        vswitchd_socket="/var/run/vsw/ctl.sock", vswitchd_state_file="/srv/vsw/state.json")
    assert "WatchdogSec" not in unit
    assert "ProtectSystem" not in unit and "CapabilityBoundingSet" not in unit
    assert "RuntimeDirectory=vsw" in unit
    assert "--socket /var/run/vsw/ctl.sock" in unit and "--state-file /srv/vsw/state.json" in unit
    unit = _render_unit(tmp_path, vswitchd_socket="/srv/vsw/ctl.sock", vswitchd_state_file="/srv/vsw/state.json")
    assert "RuntimeDirectory" not in unit and "ReadWritePaths=/srv/vsw" in unit
    assert "--datapath auto\n" in unit, "no --xdp-on-veth by default"
    unit = _render_unit(tmp_path, vswitchd_datapath="rings", vswitchd_xdp_on_veth="true")
    assert "--datapath rings --xdp-on-veth\n" in unit
