"""The Molecule scenarios, run in the background beside the rest of the suite.

A scenario is minutes of containers booting and Ansible converging, mostly on a core the other tests
leave idle while they wait on timers, pings and leases. So, like the Debian-kernel guest, the selected
scenarios start at the first test that is not load-sensitive (tests/conftest.py) and the tests that
report them (tests/molecule/test_molecule.py, sorted last) only wait for their results.

Two chains, one thread each: scripts/molecule/setup.sh (podman, containers.podman, the images), then
every selected scenario on Debian 12 (bookworm); and, once the setup is done, the scenarios on the
other managed-host releases (run.sh keeps one molecule per release, and the containers' names carry
the release, so the two chains never share a container). Every process is started in a process group
of its own and stopped by it, never by name.
"""
from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Optional

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts" / "molecule"
BASE = Path(os.environ.get("OPENVIF_MOLECULE_BASE", "/var/tmp/openvif-molecule"))
SETUP_TIMEOUT = 900        # a first debootstrap takes about a minute per image; apt and PyPI may be slow
SCENARIO_TIMEOUT = 900     # 70-470 s here (+ about a minute for a release's first image); stops a hung run
TAIL_LINES = 80

Case = tuple[str, str]     # (scenario, release)
Result = tuple[int, float, Path]   # (exit code, seconds, log)


def _run(argv: list[str], log: Path, timeout: int, running: list) -> tuple[int, float]:
    """Run argv with output to log (the whole of it), return (exit code, seconds); -9 on timeout.

    ``running``: where the process is kept while it runs, for whoever must stop it early."""
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        running.append(proc)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)   # our own process group only: run.sh, molecule, ansible
            proc.wait()
            code = -9
        finally:
            running.remove(proc)
    return code, time.monotonic() - started


def tail(log: Path, lines: int = TAIL_LINES) -> str:
    text = log.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])


def _release_env(release: str) -> list[str]:
    # SKIP_SETUP: the setup chain did it (run.sh still builds another release's image the first time).
    return ["env", "SKIP_SETUP=1", f"OPENVIF_MOLECULE_RELEASE={release}"]


def _scenario(scenario: str, release: str, running: list) -> Result:
    """``molecule test`` of one scenario on one release; a failed one's container is removed."""
    log = BASE / "logs" / f"pytest-{scenario}-{release}.log"
    env = _release_env(release)
    code, seconds = _run([*env, str(SCRIPTS / "run.sh"), "test", "-s", scenario], log, SCENARIO_TIMEOUT, running)
    if code != 0:
        # molecule destroys the container itself on a failed step, not when killed on timeout.
        subprocess.run([*env, str(SCRIPTS / "run.sh"), "destroy", "-s", scenario], cwd=ROOT,
                       capture_output=True, check=False, timeout=300)
    return code, seconds, log


class MoleculeAhead:
    """The selected scenarios (``select``), run by ``start`` in two background chains."""

    def __init__(self) -> None:
        self.cases: list[Case] = []
        self.results: dict[Case, Result] = {}
        self.errors: dict[Case, str] = {}
        self.done: dict[Case, threading.Event] = {}
        self.setup_done = threading.Event()
        self.setup_failure: Optional[str] = None
        self.running: list[subprocess.Popen] = []
        self.stopping = False
        self.threads: list[threading.Thread] = []

    def select(self, cases: list[Case]) -> None:
        for case in cases:
            if case not in self.done:
                self.cases.append(case)
                self.done[case] = threading.Event()

    def start(self) -> None:
        if self.threads or not self.cases:
            return
        bookworm = [case for case in self.cases if case[1] == "bookworm"]
        others = [case for case in self.cases if case[1] != "bookworm"]
        self.threads = [threading.Thread(target=self._setup_then, args=(bookworm,), name="molecule-bookworm",
                                         daemon=True),
                        threading.Thread(target=self._after_setup, args=(others,), name="molecule-other-releases",
                                         daemon=True)]
        for thread in self.threads:
            thread.start()

    def _setup_then(self, cases: list[Case]) -> None:
        try:
            if os.geteuid() != 0:
                self.setup_failure = ("Molecule scenarios need root (rootful podman, debootstrap); "
                                      "run scripts/test.sh as root")
            else:
                log = BASE / "logs" / "pytest-setup.log"
                code, seconds = _run([str(SCRIPTS / "setup.sh")], log, SETUP_TIMEOUT, self.running)
                if code != 0:
                    self.setup_failure = (f"scripts/molecule/setup.sh failed (exit {code}, {seconds:.0f}s): podman, "
                                          f"containers.podman or the image could not be set up. Last lines of "
                                          f"{log}:\n{tail(log)}")
        except Exception as err:   # reported by every scenario's test, not lost in the thread
            self.setup_failure = f"scripts/molecule/setup.sh could not run: {type(err).__name__}: {err}"
        finally:
            self.setup_done.set()
        self._chain(cases)

    def _after_setup(self, cases: list[Case]) -> None:
        self.setup_done.wait()
        self._chain(cases)

    def _chain(self, cases: list[Case]) -> None:
        for case in cases:
            try:
                if self.stopping:
                    self.errors[case] = "the session is stopping"
                elif self.setup_failure is None:
                    self.results[case] = _scenario(*case, running=self.running)
            except Exception as err:   # reported by that case's test
                self.errors[case] = f"{type(err).__name__}: {err}"
            finally:
                self.done[case].set()

    def result(self, case: Case) -> Result:
        """The case's result once its chain has run it; fails the calling test if it cannot be had."""
        if case not in self.done:   # tests/conftest.py selects every scenario test at collection
            pytest.fail(f"molecule test -s {case[0]} on {case[1]} was not selected at collection, so no chain "
                        "runs it", pytrace=False)
        self.start()   # when the session started no test before this one
        chain = [c for c in self.cases if (c[1] == "bookworm") == (case[1] == "bookworm")]
        waited = SETUP_TIMEOUT + SCENARIO_TIMEOUT * (chain.index(case) + 2)   # those before it, and destroys
        if not self.done[case].wait(waited):
            pytest.fail(f"molecule test -s {case[0]} on {case[1]} did not finish within {waited}s", pytrace=False)
        if self.setup_failure is not None:
            pytest.fail(self.setup_failure, pytrace=False)
        if case not in self.results:
            pytest.fail(f"molecule test -s {case[0]} on {case[1]} did not run: {self.errors.get(case)}",
                        pytrace=False)
        return self.results[case]

    def stop(self) -> None:
        self.stopping = True
        for proc in list(self.running):   # our own process groups only: run.sh, molecule, ansible
            try:
                os.killpg(proc.pid, 9)
            except ProcessLookupError:
                pass
        for thread in self.threads:
            thread.join(timeout=60)


AHEAD = MoleculeAhead()
