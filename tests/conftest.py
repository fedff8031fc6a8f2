"""Shared fixtures: paths, the project's venv tools, and throwaway namespace labs."""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COLLECTIONS = ROOT / ".cache" / "collections"
VENV_BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(COLLECTIONS))  # import ansible_collections.openvif.vswitch.* in unit tests

from molecule_ahead import AHEAD as MOLECULE_AHEAD  # noqa: E402
from netlab import NetLab  # noqa: E402

GUESTS_AHEAD: list[str] = []   # commands of the selected `guest` tests, not yet started


def _waits_for_work_ahead(item: pytest.Item) -> bool:
    return item.get_closest_marker("guest") is not None or item.get_closest_marker("runs_ahead") is not None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Load-sensitive tests first, while nothing else runs; the tests that wait for work started ahead
    (the guest, the Molecule scenarios: below) last, so that it runs beside all the others; the rest
    keep their order."""
    items.sort(key=lambda item: (item.get_closest_marker("load_sensitive") is None, _waits_for_work_ahead(item)))


def pytest_collection_finish(session: pytest.Session) -> None:
    for item in session.items:
        marker = item.get_closest_marker("guest")
        if marker is not None and marker.args[0] not in GUESTS_AHEAD:
            GUESTS_AHEAD.append(marker.args[0])
    MOLECULE_AHEAD.select([(item.callspec.params["scenario"], item.callspec.params["release"])
                           for item in session.items if item.get_closest_marker("runs_ahead") is not None
                           and hasattr(item, "callspec")])


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Start the selected guest runs and Molecule scenarios at the first test that is not load-sensitive.

    The emulated guest keeps a core or two busy for half an hour, the scenarios one for twenty minutes;
    tests that measure latency or loss run before they start (they come first in the suite's order),
    every other test shares the machine with them, most of them waiting on timers, pings and leases,
    so the suite's wall time is not the sum of the three.
    """
    if item.get_closest_marker("load_sensitive") is None:
        if GUESTS_AHEAD:
            sys.path.insert(0, str(ROOT / "tests" / "vmkernel"))
            import vm

            while GUESTS_AHEAD:
                vm.ahead(GUESTS_AHEAD.pop(0)).start()
        MOLECULE_AHEAD.start()


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Scenarios still running when the session ends (stopped, or tests deselected on failure) are killed
    by their process groups; each one's destroy removes its container."""
    MOLECULE_AHEAD.stop()


def require_root_netns() -> None:
    """Integration tests need root and namespaces: without them they fail loudly, never pass silently."""
    if os.geteuid() != 0:
        pytest.fail("integration tests need root (network namespaces); run scripts/test.sh as root")
    if shutil.which("ip") is None:
        pytest.fail("iproute2 is missing; scripts/bootstrap.sh test installs it")


@pytest.fixture
def netlab(request):
    """Namespaces of one test, deleted afterwards; named ``<NETLAB_PREFIX><hex>-<role>`` where the test's
    module sets NETLAB_PREFIX (each area's own, so concurrent runs and leftovers are told apart)."""
    require_root_netns()
    prefix = getattr(request.module, "NETLAB_PREFIX", None)
    lab = NetLab(prefix=prefix + uuid.uuid4().hex[:5]) if prefix else NetLab()
    try:
        yield lab
    finally:
        lab.destroy()


@pytest.fixture(scope="session")
def ansible_env() -> dict[str, str]:
    """Environment for running ansible/ansible-playbook against this checkout."""
    env = dict(os.environ)
    env.update({
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_LOCAL_TEMP": str(ROOT / ".cache" / "ansible-tmp"),
        "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
        "PATH": f"{VENV_BIN}:{env.get('PATH', '')}",
        # Module runs record their declaration: never in this machine's /var/lib/openvif. Tests whose
        # hosts must not share one set their own per host (HostUnderTest does).
        "OPENVIF_STATE_DIR": tempfile.mkdtemp(prefix="openvif-state-"),
    })
    return env


@pytest.fixture(scope="session")
def pg_server():
    """A real PostgreSQL server of the test's own (tests/pgserver.py), for the vif_mac registry backend."""
    from pgserver import PgServer

    if os.geteuid() != 0:
        pytest.fail("the PostgreSQL tests start a server as the 'postgres' user, which needs root")
    try:
        server = PgServer()
        server.start()
    except RuntimeError as err:
        pytest.fail(f"cannot start PostgreSQL for the registry tests: {err}")
    try:
        yield server
    finally:
        server.stop()
