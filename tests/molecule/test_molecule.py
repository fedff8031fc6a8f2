"""Molecule scenarios (extensions/molecule/*) in podman containers with systemd as PID 1.

Each scenario runs ``molecule test`` through scripts/molecule/run.sh: create, prepare, converge,
idempotence, verify, destroy. Podman, its config, containers.podman and the image are prepared
once by scripts/molecule/setup.sh; if that cannot be done the tests fail with its output, they
never pass or skip silently.
"""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts" / "molecule"
SCENARIOS = sorted(p.parent.name for p in (ROOT / "extensions" / "molecule").glob("*/molecule.yml"))
BASE = Path(os.environ.get("OPENVIF_MOLECULE_BASE", "/var/tmp/openvif-molecule"))
SETUP_TIMEOUT = 900        # a first debootstrap takes about a minute; apt and PyPI may be slow
SCENARIO_TIMEOUT = 600     # scenarios take 40-100 s here; this only stops a hung run
TAIL_LINES = 80

pytestmark = [pytest.mark.molecule, pytest.mark.slow]


def _run(argv: list[str], log: Path, timeout: int) -> tuple[int, float]:
    """Run argv with output to log (the whole of it), return (exit code, seconds)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)   # our own process group only: run.sh, molecule, ansible
            proc.wait()
            code = -9
    return code, time.monotonic() - started


def _tail(log: Path, lines: int = TAIL_LINES) -> str:
    text = log.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])


@pytest.fixture(scope="session")
def molecule_ready() -> None:
    if os.geteuid() != 0:
        pytest.fail("Molecule scenarios need root (rootful podman, debootstrap); run scripts/test.sh as root")
    log = BASE / "logs" / "pytest-setup.log"
    code, seconds = _run([str(SCRIPTS / "setup.sh")], log, SETUP_TIMEOUT)
    if code != 0:
        pytest.fail(f"scripts/molecule/setup.sh failed (exit {code}, {seconds:.0f}s): podman, containers.podman "
                    f"or the image could not be set up. Last lines of {log}:\n{_tail(log)}", pytrace=False)


def test_scenarios_found() -> None:
    assert {"kernel", "vswitchd"} <= set(SCENARIOS), f"scenarios found: {SCENARIOS}"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_molecule_scenario(scenario: str, molecule_ready: None) -> None:
    log = BASE / "logs" / f"pytest-{scenario}.log"
    env_skip = {"SKIP_SETUP": "1"}  # molecule_ready did it
    argv = ["env", *[f"{k}={v}" for k, v in env_skip.items()], str(SCRIPTS / "run.sh"), "test", "-s", scenario]
    code, seconds = _run(argv, log, SCENARIO_TIMEOUT)
    if code != 0:
        # molecule destroys the container itself on a failed step, not when killed on timeout.
        subprocess.run(["env", "SKIP_SETUP=1", str(SCRIPTS / "run.sh"), "destroy", "-s", scenario], cwd=ROOT,
                       capture_output=True, check=False, timeout=300)
        what = "timed out" if code == -9 else f"failed (exit {code})"
        pytest.fail(f"molecule test -s {scenario} {what} after {seconds:.0f}s. Last lines of {log}:\n{_tail(log)}",
                    pytrace=False)
    print(f"molecule test -s {scenario}: {seconds:.0f}s")
