"""Concurrent controllers: several ansible-playbook runs of the vif_mac role, started at the same
moment over disjoint host groups of one inventory, against one registry (the file, or a real
PostgreSQL server this test starts). Afterwards: 0 duplicate MACs, 0 lost assignments, and every
run either succeeded or failed with the lock message. Killed runs (kill -9) leave the registry valid.

Hosts are empty network namespaces (netns connection). One round per case here;
``OPENVIF_REPEAT=20`` (bench/vif_mac_concurrency.sh) repeats every case 20 times.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch import mac as macs
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch import mac_registry as registries

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPEAT = int(os.environ.get("OPENVIF_REPEAT", "1"))
HOSTS_PER_GROUP = 2
VIFS_PER_HOST = 6
PLAY = """
- hosts: all
  gather_facts: false
  roles:
    - role: openvif.vswitch.vif_mac
"""


class Fleet:
    def __init__(self, lab, env, tmp: Path, groups: int, backend: str, conninfo: str = "", table: str = "") -> None:
        self.env, self.tmp, self.groups = env, tmp, groups
        self.registry = tmp / "vif_mac_registry.yml"
        self.play = tmp / "play.yml"
        self.play.write_text(PLAY)
        self.backend = registries.FileRegistry(str(self.registry)) if backend == "file" \
            else registries.PostgresRegistry(conninfo, table)
        role_vars = {"vif_mac_registry": str(self.registry), "vif_mac_registry_backend": backend,
                     "vif_mac_registry_dsn": conninfo, "vif_mac_registry_table": table or "vif_mac_assignments"}
        children = {}
        for g in range(groups):
            hosts = {}
            for h in range(HOSTS_PER_GROUP):
                name = f"g{g}h{h}"
                hosts[name] = {"ansible_connection": "openvif.vswitch.netns", "ansible_netns_name": lab.ns(name),
                               "ansible_python_interpreter": sys.executable,
                               "vif_mac_vifs": [{"vm": f"{name}vm{n}"} for n in range(VIFS_PER_HOST)]}
            children[f"g{g}"] = {"hosts": hosts}
        self.inventory = tmp / "inventory.yml"
        self.inventory.write_text(yaml.safe_dump({"all": {"vars": role_vars, "children": children}}))

    def start(self, group: str, *extra: str) -> subprocess.Popen:
        return subprocess.Popen(["ansible-playbook", "-i", str(self.inventory), str(self.play), "--limit", group,
                                 *extra], env=self.env, cwd=self.tmp, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)

    def expected(self) -> set[str]:
        return {f"g{g}h{h}vm{n}/0" for g in range(self.groups) for h in range(HOSTS_PER_GROUP)
                for n in range(VIFS_PER_HOST)}


def kill_9_tree(pid: int) -> None:
    """SIGKILL ``pid`` and every descendant: Ansible's workers call setsid, so a process group misses them."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    for member in reversed(tree):  # the writers (leaves) first, before they can finish
        try:
            os.kill(member, signal.SIGKILL)
        except ProcessLookupError:
            pass


def run_round(fleet: Fleet) -> dict[str, int]:
    """Start every group's run at once; return the counts the issue asks for."""
    procs = [fleet.start(f"g{g}") for g in range(fleet.groups)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    failed = [(p.returncode, out) for p, out in zip(procs, outputs, strict=True) if p.returncode != 0]
    for rc, out in failed:
        assert "is locked by" in out, f"a run failed other than on the lock (rc={rc}):\n{out[-3000:]}"
    assignments = fleet.backend.assignments(macs.XEN_RANGE)  # parse_registry: raises on a MAC held twice
    lost = fleet.expected() - set(assignments) if not failed else set()
    return {"runs": len(procs), "failed_on_lock": len(failed), "lost": len(lost),
            "duplicates": len(assignments) - len(set(assignments.values()))}


@pytest.mark.parametrize("backend", ["file", "postgresql"])
@pytest.mark.parametrize("runs", [2, 4, 8])
def test_concurrent_role_runs_share_one_registry(netlab, ansible_env, tmp_path, request, backend, runs):
    conninfo = ""
    if backend == "postgresql":
        conninfo = request.getfixturevalue("pg_server").conninfo
    for round_ in range(REPEAT):
        table = f"conc_{runs}_{round_}_{os.getpid()}"
        directory = tmp_path / f"round{round_}"
        directory.mkdir()
        fleet = Fleet(netlab, ansible_env, directory, runs, backend, conninfo, table)
        counts = run_round(fleet)
        print(f"{backend} runs={runs} round={round_}: {counts}")
        assert counts["duplicates"] == 0 and counts["lost"] == 0, counts
        assert counts["failed_on_lock"] == 0, "a run waited past the 60 s lock timeout on this machine"


def test_kill_9_during_the_registry_write_leaves_it_valid(netlab, ansible_env, tmp_path):
    fleet = Fleet(netlab, ansible_env, tmp_path, 2, "file")
    assert run_round(fleet) == {"runs": 2, "failed_on_lock": 0, "lost": 0, "duplicates": 0}
    small = fleet.registry.read_text()
    # A large registry makes the write long enough to be caught in the act.
    big = macs.parse_registry(yaml.safe_load(small), macs.XEN_RANGE)
    more = macs.assign(macs.XEN_RANGE, {}, [f"old{n}/0" for n in range(40000)],
                       {macs.mac_to_int(m) for m in big.values()})
    big.update({key: macs.int_to_mac(address) for key, address in more.items()})
    text = macs.render_registry(big, macs.XEN_RANGE)
    inventory = yaml.safe_load(fleet.inventory.read_text())
    inventory["all"]["children"]["g0"]["hosts"]["g0h0"]["vif_mac_vifs"].append({"vm": "latecomer"})
    fleet.inventory.write_text(yaml.safe_dump(inventory))
    prefix = f".{fleet.registry.name}.tmp-"
    for _attempt in range(5):
        fleet.registry.write_text(text)
        proc = fleet.start("g0")
        caught = False
        deadline = time.monotonic() + 300
        while proc.poll() is None and time.monotonic() < deadline:
            if any(p.name.startswith(prefix) for p in tmp_path.iterdir()):
                kill_9_tree(proc.pid)
                caught = True
                break
            time.sleep(0.0005)
        out = proc.communicate()[0]
        if caught:
            break
        assert proc.returncode == 0, out[-3000:]
    else:
        pytest.fail("never caught the run between writing its temporary file and the rename")
    after = fleet.backend.assignments(macs.XEN_RANGE)  # valid: parses, one MAC per VIF
    assert fleet.registry.read_text() == text or set(after) == set(big) | {"latecomer/0"}
    # The lock died with the run: the next one goes through at once and finishes the job.
    proc = fleet.start("g0")
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, out[-3000:]
    after = fleet.backend.assignments(macs.XEN_RANGE)
    assert set(after) == set(big) | {"latecomer/0"} and all(after[k] == v for k, v in big.items())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(prefix)]


def test_killed_postgresql_run_commits_all_or_nothing(netlab, ansible_env, tmp_path, pg_server):
    table = f"killed_{os.getpid()}"
    fleet = Fleet(netlab, ansible_env, tmp_path, 1, "postgresql", pg_server.conninfo, table)
    inventory = yaml.safe_load(fleet.inventory.read_text())
    many = [{"vm": f"bulk{n}"} for n in range(3000)]
    inventory["all"]["children"]["g0"]["hosts"]["g0h0"]["vif_mac_vifs"] = many
    fleet.inventory.write_text(yaml.safe_dump(inventory))
    import psycopg

    with psycopg.connect(pg_server.conninfo, autocommit=True) as watch:
        proc = fleet.start("g0")
        caught = False
        deadline = time.monotonic() + 300
        while proc.poll() is None and time.monotonic() < deadline:
            row = watch.execute("SELECT count(*) FROM pg_stat_activity WHERE query LIKE %s AND pid <> pg_backend_pid()",
                                (f'INSERT INTO "{table}"%',)).fetchone()
            if row[0]:
                kill_9_tree(proc.pid)
                caught = True
                break
            time.sleep(0.002)
        proc.communicate()
        assert caught, "the run finished before its INSERTs were seen"
        time.sleep(0.5)  # the server notices the closed socket and rolls back
    total = len(many) + VIFS_PER_HOST  # g0h0's bulk VIFs and g0h1's
    assert len(fleet.backend.assignments(macs.XEN_RANGE)) in (0, total), "a killed transaction left part of its rows"
    proc = fleet.start("g0")
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, out[-3000:]
    assert len(fleet.backend.assignments(macs.XEN_RANGE)) == total
