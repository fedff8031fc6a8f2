"""The vif_mac registry backends: lock, compare-and-swap, atomic replace, PostgreSQL, export/import.

Concurrency is tested with real processes (fork) against a real file and a real PostgreSQL server;
the planner is the real plan_fleet, slowed by a sleep so that unlocked runs would interleave.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch import mac as macs
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch import mac_registry as registries
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.errors import ConflictError

RNG = macs.XEN_RANGE


def declared_for(group: int, hosts: int = 2, vifs: int = 5) -> dict[str, list[dict]]:
    return {f"g{group}h{h}": [{"vm": f"g{group}h{h}vm{n}"} for n in range(vifs)] for h in range(hosts)}


def planner_for(declared, delay: float = 0.0):
    def planner(data):
        plan = macs.plan_fleet(data, declared, {}, RNG.prefix)
        time.sleep(delay)  # widen the read-to-write window, as a slow controller would
        return plan
    return planner


def check_registry(assignments: dict[str, str], groups: int, hosts: int = 2, vifs: int = 5) -> None:
    expected = {f"g{g}h{h}vm{n}/0" for g in range(groups) for h in range(hosts) for n in range(vifs)}
    lost = expected - set(assignments)
    assert not lost, f"{len(lost)} lost assignments: {sorted(lost)[:5]}"
    assert len(set(assignments.values())) == len(assignments), "a MAC is assigned twice"


# ---------------------------------------------------------------- file backend


def test_file_first_run_writes_second_does_not(tmp_path):
    store = registries.FileRegistry(str(tmp_path / "reg.yml"))
    plan = store.update(planner_for(declared_for(0)), RNG)
    assert plan["registry_changed"] and len(store.assignments(RNG)) == 10
    inode = os.stat(store.path).st_ino
    again = store.update(planner_for(declared_for(0)), RNG)
    assert not again["registry_changed"] and os.stat(store.path).st_ino == inode  # not rewritten
    assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p]


def test_file_empty_declaration_still_creates_the_registry(tmp_path):
    store = registries.FileRegistry(str(tmp_path / "reg.yml"))
    assert store.update(planner_for({}), RNG)["registry_changed"]
    assert yaml.safe_load(Path(store.path).read_text())["assignments"] == {}


def test_check_mode_writes_nothing(tmp_path):
    store = registries.FileRegistry(str(tmp_path / "reg.yml"))
    plan = store.update(planner_for(declared_for(0)), RNG, write=False)
    assert plan["registry_changed"] and not os.path.exists(store.path)


_HOLDER = """
import fcntl, json, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, json.dumps({"pid": os.getpid(), "host": "ctl-a", "since": "2026-12-02T10:00:00Z"}).encode())
print("held", flush=True)
time.sleep(60)
"""


def test_lock_held_past_timeout_names_the_holder_and_changes_nothing(tmp_path):
    store = registries.FileRegistry(str(tmp_path / "reg.yml"), lock_timeout=0.5)
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, store.lock_path], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        with pytest.raises(ConflictError) as err:
            store.update(planner_for(declared_for(0)), RNG)
        assert 0.5 <= time.monotonic() - started < 5
        assert f"is locked by pid {holder.pid} on ctl-a since 2026-12-02T10:00:00Z" in err.value.message
        assert err.value.field == "registry" and "waited" in err.value.message
        assert not os.path.exists(store.path)
    finally:
        holder.kill()
        holder.wait()
    # kill -9 released the lock: the next run goes straight through and records itself.
    store.update(planner_for(declared_for(0)), RNG)
    info = json.loads(Path(store.lock_path).read_text())
    assert info["pid"] == os.getpid() and info["host"] == socket.gethostname()


def test_compare_and_swap_replans_when_the_file_changed_behind_the_lock(tmp_path):
    store = registries.FileRegistry(str(tmp_path / "reg.yml"))
    store.update(planner_for(declared_for(0)), RNG)
    theirs = dict(store.assignments(RNG), **{"handmade/0": "00:16:3e:00:00:01"})
    calls = []

    def planner(data):
        calls.append(data)
        plan = macs.plan_fleet(data, declared_for(1), {}, RNG.prefix)
        if len(calls) == 1:  # someone ignoring the lock (an editor) writes between our read and our write
            Path(store.path).write_text(macs.render_registry(theirs, RNG))
        return plan

    plan = store.update(planner, RNG)
    assert len(calls) == 2 and plan["replans"] == 1
    after = store.assignments(RNG)
    assert after["handmade/0"] == "00:16:3e:00:00:01"
    check_registry(after, groups=2)


def _run_file(path: str, group: int, delay: float) -> None:
    registries.FileRegistry(path, lock_timeout=60).update(planner_for(declared_for(group), delay), RNG)


@pytest.mark.parametrize("runs", [2, 4, 8])
def test_concurrent_file_runs_lose_nothing_and_never_share_a_mac(tmp_path, runs):
    path = str(tmp_path / "reg.yml")
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_run_file, args=(path, g, 0.05)) for g in range(runs)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    check_registry(registries.FileRegistry(path).assignments(RNG), groups=runs)


_WRITER = """
import sys, time
sys.path.insert(0, sys.argv[2])
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch import mac as macs
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch import mac_registry as registries
declared = {"big": [{"vm": f"vm{n}"} for n in range(int(sys.argv[3]))]}
registries.FileRegistry(sys.argv[1]).update(lambda d: macs.plan_fleet(d, declared, {}, None), macs.XEN_RANGE)
"""


def test_kill_9_during_the_write_leaves_the_old_registry(tmp_path):
    store = registries.FileRegistry(str(tmp_path / "reg.yml"))
    store.update(planner_for(declared_for(0)), RNG)
    old = Path(store.path).read_text()
    collections = str(Path(__file__).resolve().parents[2] / ".cache" / "collections")
    tmp = tmp_path / ".reg.yml.tmp-"
    for _attempt in range(5):
        writer = subprocess.Popen([sys.executable, "-c", _WRITER, store.path, collections, "150000"])
        caught = False
        while writer.poll() is None:
            if any(p.name.startswith(tmp.name) for p in tmp_path.iterdir()):
                os.kill(writer.pid, signal.SIGKILL)
                caught = True
                break
        writer.wait()
        if caught and writer.returncode == -signal.SIGKILL:
            break
        assert writer.returncode == 0, "the writer failed on its own"
        Path(store.path).write_text(old)  # it finished first: put the small registry back, try again
    else:
        pytest.fail("never caught the writer between creating its temporary file and the rename")
    # The kill landed while the temporary file existed: before the rename the old registry is intact,
    # after it the new one is complete; never a mix.
    now = Path(store.path).read_text()
    if now != old:
        complete = store.assignments(RNG)
        assert len(complete) == 150000 + 10 and all(f"vm{n}/0" in complete for n in range(150000))
    # The next run is not blocked (the kernel dropped the lock) and clears the killed run's temporary file.
    store.update(planner_for(declared_for(1)), RNG)
    check_registry(store.assignments(RNG), groups=2)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(tmp.name)]


def test_import_merges_and_refuses_conflicts_unchanged(tmp_path):
    store = registries.FileRegistry(str(tmp_path / "reg.yml"))
    store.update(planner_for(declared_for(0)), RNG)
    before = Path(store.path).read_text()
    ours = store.assignments(RNG)
    key, mac = sorted(ours.items())[0]
    with pytest.raises(ConflictError) as err:
        store.import_assignments({"other/0": mac}, RNG)
    assert "is also assigned to" in err.value.message
    with pytest.raises(ConflictError) as err:
        store.import_assignments({key: "00:16:3e:00:00:07"}, RNG)
    assert "differs from the target's" in err.value.message and key in err.value.field
    assert Path(store.path).read_text() == before
    assert store.import_assignments({"new/0": "00:16:3e:00:00:07"}, RNG) == (1, True)
    assert store.import_assignments({"new/0": "00:16:3e:00:00:07"}, RNG) == (0, False)


def test_dsn_password_never_reaches_a_message():
    assert registries.redacted("host=db password=s3cret user=a") == "host=db password=*** user=a"
    assert registries.redacted("postgresql://a:s3cret@db/fleet") == "postgresql://a:***@db/fleet"
    assert registries.redacted("") == "the PG* environment"


# ---------------------------------------------------------------- PostgreSQL backend


@pytest.fixture
def pg(pg_server, request):
    table = "t_" + request.node.name.lower().replace("[", "_").replace("]", "")[:40]
    return registries.PostgresRegistry(pg_server.conninfo, table=table)


def test_pg_plan_write_and_idempotent(pg):
    plan = pg.update(planner_for(declared_for(0)), RNG)
    assert plan["registry_changed"] and plan["replans"] == 0
    first = pg.assignments(RNG)
    check_registry(first, groups=1)
    again = pg.update(planner_for(declared_for(0)), RNG)
    assert not again["registry_changed"] and pg.assignments(RNG) == first


def test_pg_replans_after_another_run_took_its_mac(pg, pg_server):
    import psycopg

    pg.update(planner_for({}), RNG)  # creates the table
    calls = []

    def planner(data):
        calls.append(1)
        plan = macs.plan_fleet(data, declared_for(0, hosts=1, vifs=1), {}, RNG.prefix)
        if len(calls) == 1:  # another controller commits the very MAC this run chose
            with psycopg.connect(pg_server.conninfo, autocommit=True) as other:
                other.execute(f"INSERT INTO {pg.table} (prefix, key, mac) VALUES (%s, %s, %s)",
                              (RNG.prefix, "elsewhere/0", plan["registry"]["g0h0vm0/0"]))
        return plan

    plan = pg.update(planner, RNG)
    assert len(calls) == 2 and plan["replans"] == 1
    after = pg.assignments(RNG)
    assert set(after) == {"elsewhere/0", "g0h0vm0/0"} and len(set(after.values())) == 2


def _run_pg(conninfo: str, table: str, group: int, delay: float) -> None:
    registries.PostgresRegistry(conninfo, table).update(planner_for(declared_for(group), delay), RNG)


@pytest.mark.parametrize("runs", [2, 4, 8])
def test_concurrent_pg_runs_lose_nothing_and_never_share_a_mac(pg, pg_server, runs):
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_run_pg, args=(pg_server.conninfo, pg.table, g, 0.05)) for g in range(runs)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    check_registry(pg.assignments(RNG), groups=runs)


def test_export_import_round_trip_keeps_every_mac(pg, tmp_path):
    store = registries.FileRegistry(str(tmp_path / "reg.yml"))
    store.update(planner_for(declared_for(0)), RNG)
    store.update(planner_for(declared_for(1)), RNG)
    original = store.assignments(RNG)
    assert pg.import_assignments(original, RNG) == (20, True)
    assert pg.assignments(RNG) == original
    assert pg.import_assignments(original, RNG) == (0, False)
    # A run against the database after the move re-numbers nobody.
    pg.update(planner_for({**declared_for(0), **declared_for(1)}), RNG)
    assert pg.assignments(RNG) == original
    back = registries.FileRegistry(str(tmp_path / "back.yml"))
    back.import_assignments(pg.assignments(RNG), RNG)
    assert Path(back.path).read_text() == Path(store.path).read_text()


def test_pg_unreachable_is_a_clear_error():
    with pytest.raises(Exception) as err:
        registries.PostgresRegistry("host=/nonexistent-openvif password=x", connect_timeout=2).assignments(RNG)
    assert "vif_mac_registry_dsn" in str(err.value) and "does not reach a PostgreSQL server" in str(err.value)
    assert "password=***" in str(err.value)
