"""Molecule scenarios (extensions/molecule/*) in podman containers with systemd as PID 1.

Each scenario runs ``molecule test`` through scripts/molecule/run.sh: create, prepare, converge,
idempotence, verify, destroy. Podman, its config, containers.podman and the image are prepared
once by scripts/molecule/setup.sh; if that cannot be done the tests fail with its output, they
never pass or skip silently. Every scenario runs on Debian 12 (bookworm); those in RELEASES also
on the other managed-host releases named there, each in its own debootstrapped image.

The last tests check the vswitchd role's pieces the scenario does not vary (the package
archive, the unit for other settings); they are quick and need no podman.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts" / "molecule"
SCENARIOS = sorted(p.parent.name for p in (ROOT / "extensions" / "molecule").glob("*/molecule.yml"))
# Managed hosts as they are (docs/molecule.md): the scenarios that run again on other Debian
# releases, with the release's own python3 and python3-pyroute2 (Debian 11: 3.9 and 0.5.14,
# Debian 13: 3.13 and 0.7.7). Their molecule.yml take the image from OPENVIF_MOLECULE_RELEASE.
RELEASES = {"bullseye": ("kernel", "vswitchd"), "trixie": ("kernel", "vswitchd")}
CASES = [(scenario, "bookworm") for scenario in SCENARIOS] + \
    [(scenario, release) for release, scenarios in RELEASES.items() for scenario in scenarios]
BASE = Path(os.environ.get("OPENVIF_MOLECULE_BASE", "/var/tmp/openvif-molecule"))
SETUP_TIMEOUT = 900        # a first debootstrap takes about a minute; apt and PyPI may be slow
SCENARIO_TIMEOUT = 900     # 40-220 s here (+ about a minute for a release's first image); stops a hung run
TAIL_LINES = 80


def _run(argv: list[str], log: Path, timeout: int, running: list | None = None) -> tuple[int, float]:
    """Run argv with output to log (the whole of it), return (exit code, seconds).

    ``running``: where the process is kept while it runs, for whoever must stop it early."""
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        if running is not None:
            running.append(proc)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)   # our own process group only: run.sh, molecule, ansible
            proc.wait()
            code = -9
    if running is not None:
        running.remove(proc)
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


def _release_env(release: str) -> list[str]:
    # SKIP_SETUP: molecule_ready did it (run.sh still builds another release's image the first time).
    return ["env", "SKIP_SETUP=1", f"OPENVIF_MOLECULE_RELEASE={release}"]


def _scenario(scenario: str, release: str, running: list | None = None) -> tuple[int, float, Path]:
    """``molecule test`` of one scenario on one release; a failed one's container is removed."""
    log = BASE / "logs" / f"pytest-{scenario}-{release}.log"
    env = _release_env(release)
    code, seconds = _run([*env, str(SCRIPTS / "run.sh"), "test", "-s", scenario], log, SCENARIO_TIMEOUT, running)
    if code != 0:
        # molecule destroys the container itself on a failed step, not when killed on timeout.
        subprocess.run([*env, str(SCRIPTS / "run.sh"), "destroy", "-s", scenario], cwd=ROOT,
                       capture_output=True, check=False, timeout=300)
    return code, seconds, log


class OtherReleases:
    """The selected scenarios on the releases other than bookworm, one after another in a thread.

    They run beside bookworm's (run.sh keeps one molecule per release, and the containers' names
    carry the release), so the two chains share the machine instead of adding up; each release's
    test then waits for its own result.
    """

    def __init__(self, cases: list[tuple[str, str]]) -> None:
        self.cases = cases
        self.results: dict[tuple[str, str], tuple[int, float, Path]] = {}
        self.done = {case: threading.Event() for case in cases}
        self.running: list[subprocess.Popen] = []
        self.stopping = False
        self.errors: dict[tuple[str, str], str] = {}
        self.thread = threading.Thread(target=self._run_all, name="molecule-other-releases", daemon=True)

    def _run_all(self) -> None:
        for case in self.cases:
            if self.stopping:
                break
            try:
                self.results[case] = _scenario(*case, running=self.running)
            except Exception as err:   # reported by that case's test, not lost in the thread
                self.errors[case] = f"{type(err).__name__}: {err}"
            finally:
                self.done[case].set()

    def result(self, case: tuple[str, str]) -> tuple[int, float, Path]:
        waited = SCENARIO_TIMEOUT * (self.cases.index(case) + 2)   # those before it, and destroys
        if not self.done[case].wait(waited):
            pytest.fail(f"molecule test -s {case[0]} on {case[1]} did not finish within {waited}s", pytrace=False)
        if case not in self.results:
            why = self.errors.get(case, "the session is stopping")
            pytest.fail(f"molecule test -s {case[0]} on {case[1]} did not run: {why}", pytrace=False)
        return self.results[case]

    def stop(self) -> None:
        self.stopping = True
        for proc in list(self.running):   # our own process groups only: run.sh, molecule, ansible
            try:
                os.killpg(proc.pid, 9)
            except ProcessLookupError:
                pass
        self.thread.join(timeout=60)


@pytest.fixture(scope="session")
def other_releases(request, molecule_ready: None):
    """Started by the first scenario test of the session, whichever release it is on."""
    selected = [item.callspec.params for item in request.session.items
                if item.originalname == "test_molecule_scenario" and hasattr(item, "callspec")]
    cases = [(params["scenario"], params["release"]) for params in selected if params["release"] != "bookworm"]
    chain = OtherReleases(cases)
    chain.thread.start()
    try:
        yield chain
    finally:
        chain.stop()


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
@pytest.mark.parametrize(("scenario", "release"), CASES, ids=[f"{s}-{r}" for s, r in CASES])
def test_molecule_scenario(scenario: str, release: str, other_releases: OtherReleases) -> None:
    if release == "bookworm":
        code, seconds, log = _scenario(scenario, release)
    else:   # ran in the background, beside bookworm's
        code, seconds, log = other_releases.result((scenario, release))
    if code != 0:
        what = "timed out" if code == -9 else f"failed (exit {code})"
        pytest.fail(f"molecule test -s {scenario} on {release} {what} after {seconds:.0f}s. Last lines of {log}:\n"
                    f"{_tail(log)}", pytrace=False)
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
