"""bench/fleet.py's smallest configuration does what its figures claim: both forms (site.yml's batch
tasks, and one task per bridge and per port) build every host's networks on the first run, change
nothing on the second, and leave every VIF on its declared bridge, as the kernel reports it.

Its timings are not checked here (bench/ prints them); its correctness is.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
import fleet as bench  # noqa: E402

HOSTS, PORTS = 3, 4


@pytest.fixture
def small_fleet():
    if os.geteuid() != 0:
        pytest.fail("the fleet benchmark's test needs root (network namespaces)")
    fleet = bench.Fleet(HOSTS, PORTS)   # namespaces fl<hex>-hv1..3 and fl<hex>-phys
    directory = Path(tempfile.mkdtemp(prefix="fl-fleet-test-"))
    try:
        yield fleet.build(), directory
    finally:   # also when building or a run failed
        fleet.destroy()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.parametrize("form", bench.FORMS)
def test_both_forms_build_the_fleet_then_change_nothing(small_fleet, form):
    fleet, directory = small_fleet
    inventory = fleet.inventory(directory)
    playbook = bench.SITE if form == "batch" else bench.per_port_playbook(directory)
    if form == "per-port":  # the rewrite really is one task per item, not the batch form again
        ports_task = next(task for task in yaml.safe_load(playbook.read_text())[0]["tasks"]
                          if "openvif.vswitch.vswitch_port" in task)
        assert ports_task["loop"] == "{{ vswitch_ports }}" and "ports" not in ports_task["openvif.vswitch.vswitch_port"]
    assert all(bridge == "" for view in fleet.attached().values() for bridge in view.values()), "VIFs start unattached"

    first = bench.run_play(directory, inventory, playbook, forks=4, label="first", timeout=600)
    assert first.rc == 0 and first.failed() == 0, first.output[-4000:]
    assert set(first.stats) == set(fleet.hosts)
    assert all(counters["changed"] > 0 for counters in first.stats.values()), first.stats

    second = bench.run_play(directory, inventory, playbook, forks=4, label="second", timeout=600)
    assert second.rc == 0 and second.failed() == 0, second.output[-4000:]
    assert set(second.stats) == set(fleet.hosts)
    assert second.changed() == 0, [(row["host"], row["task"]) for row in second.rows if row["changed"]]

    # Every host has exactly its declared ports, on their bridges (iproute2's view, not the collection's).
    assert fleet.attached() == fleet.expected()
    assert fleet.expected()["hv1"] == {"vif1.0": "xenbr0", "vif1.1": "xapi1", "vif2.0": "xenbr0", "vif2.1": "xapi1"}
    # One MAC per declared VIF in the run's registry, and the timing callback saw every host's port task.
    assert bench.registry_size(directory) == HOSTS * PORTS
    timed = {row["host"] for row in first.rows if row["action"] == "openvif.vswitch.vswitch_port"}
    assert timed == set(fleet.hosts)
    assert bench.problems(fleet, first, second, directory) == []
