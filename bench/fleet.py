"""Fleet benchmark: playbooks/site.yml over lab hypervisors (namespaces), batch forms against one task per port.

    .venv/bin/python bench/fleet.py [--sizes 10,50] [--ports 20] [--forks 8] [--json FILE]

For each fleet size, each form gets a fresh fleet built like the lab (inventories/lab): hypervisor
namespaces cabled by peth0 to one physical switch, each with xenbr0 already holding its uplink and its
address (as the bridge role leaves it), and `--ports` tap VIFs (VM n's vif<n>.0 for xenbr0, vif<n>.1
for the internal xapi1). A generated inventory in a temp dir reaches them through the netns
connection, each with its own state dir; the MAC registry is in the temp dir too.

  batch      playbooks/site.yml as shipped: one vswitch_bridge task with the list of bridges, one
             vswitch_port task with the list of ports (purge: true)
  per-port   the same playbook and declaration with those two tasks written as users write them with
             the peers' modules: one vswitch_bridge task per bridge, one vswitch_port task per port (loop)

Both forms run everything else of site.yml alike: the canary-first batches (serial 1, 2, 50%, 100%),
the health gate's snapshot and probe of the gateway, vswitch_info, the vif_mac role. Each form runs
twice: the first run builds the networks, the second must report changed=0 (checked). Then every
host's ports are checked on the kernel (right bridge) and the registry holds one MAC per VIF.

Printed per size and form: wall time of both runs, and per host the seconds its tasks took (from a
worker taking the task to its result, tests' fleet_timing callback): the network tasks the forms differ
in, and all tasks; then the ratios. Root only; removes every namespace it made, also on failure.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from ansible_runner import RECAP  # noqa: E402
from netlab import NetLab, sh  # noqa: E402

SITE = ROOT / "playbooks" / "site.yml"
FORMS = ("batch", "per-port")
NETWORK_ACTIONS = {"openvif.vswitch.vswitch_bridge", "openvif.vswitch.vswitch_vlan", "openvif.vswitch.vswitch_port"}
GATEWAY = "10.77.255.254"
BRIDGES = [{"name": "xenbr0", "uplink": "peth0", "stp": False, "forward_delay": 0, "mtu": 1500},
           {"name": "xapi1", "stp": False, "forward_delay": 0}]


def host_address(index: int) -> str:
    return f"10.77.{index // 200}.{index % 200 + 1}"


def declared_ports(host: str, ports: int) -> tuple[list[dict], list[dict]]:
    """This host's VIFs (vswitch_ports) and the VMs' NICs behind them (vif_mac_vifs): two per VM."""
    vifs = []
    for slot in range(ports):
        domid, device = slot // 2 + 1, slot % 2
        vifs.append({"vm": f"{host}-vm{domid}", "device": device, "interface": f"vif{domid}.{device}",
                     "bridge": "xenbr0" if device == 0 else "xapi1"})
    return [{"name": vif["interface"], "bridge": vif["bridge"]} for vif in vifs], vifs


@dataclass
class Fleet:
    """``size`` namespace hypervisors on one physical switch, each with ``ports`` tap VIFs."""

    size: int
    ports: int
    lab: NetLab = field(default_factory=lambda: NetLab(prefix="fl" + uuid.uuid4().hex[:6]))
    hosts: dict = field(default_factory=dict)   # host name -> namespace

    def build(self) -> Fleet:
        phys = self.lab.ns("phys")
        sh("ip", "-n", phys, "-batch", "-", input="link add sw0 type bridge stp_state 0 forward_delay 0\n"
           f"addr add {GATEWAY}/16 dev sw0\nlink set sw0 up\n")
        for index in range(1, self.size + 1):
            host = f"hv{index}"
            ns = self.lab.ns(host)
            self.lab.link(ns, "peth0", phys, f"p{index}")
            sh("ip", "-n", phys, "link", "set", f"p{index}", "master", "sw0")
            ports, unused = declared_ports(host, self.ports)
            lines = ["link add xenbr0 type bridge stp_state 0 forward_delay 0", "link set peth0 master xenbr0",
                     f"addr add {host_address(index)}/16 dev xenbr0", "link set xenbr0 up"]
            lines += [f"tuntap add mode tap name {port['name']}" for port in ports]
            sh("ip", "-n", ns, "-batch", "-", input="\n".join(lines) + "\n")
            self.hosts[host] = ns
        return self

    def destroy(self) -> None:
        self.lab.destroy()

    def inventory(self, directory: Path) -> Path:
        members = {}
        for host, ns in self.hosts.items():
            ports, vifs = declared_ports(host, self.ports)
            members[host] = {"ansible_netns_name": ns, "openvif_state_dir": str(directory / "state" / host),
                             "vswitch_ports": ports, "vif_mac_vifs": vifs,
                             "health_gate_targets": {"xenbr0": [GATEWAY]}}
        path = directory / "inventory.yml"
        path.write_text(yaml.safe_dump({"all": {
            "vars": {"ansible_connection": "openvif.vswitch.netns", "ansible_python_interpreter": sys.executable,
                     "lab_prefix": self.lab.prefix, "vswitch_bridges": BRIDGES},
            "children": {"hypervisors": {"hosts": members}}}}))
        return path

    def attached(self) -> dict[str, dict[str, str]]:
        """Per host, each VIF's bridge as the kernel says (iproute2, not the collection)."""
        view = {}
        for host, ns in self.hosts.items():
            links = json.loads(sh("ip", "-n", ns, "-j", "link", "show").stdout)
            view[host] = {link["ifname"]: link.get("master", "") for link in links if link["ifname"].startswith("vif")}
        return view

    def expected(self) -> dict[str, dict[str, str]]:
        return {host: {port["name"]: port["bridge"] for port in declared_ports(host, self.ports)[0]}
                for host in self.hosts}


def per_port_playbook(directory: Path) -> Path:
    """site.yml with its bridge and port tasks rewritten as one task per bridge and one per port."""
    plays = yaml.safe_load(SITE.read_text())
    tasks = plays[0]["tasks"]
    for index, task in enumerate(tasks):
        if "openvif.vswitch.vswitch_bridge" in task:
            tasks[index] = {
                "name": "Bridges, one task per bridge", "loop": "{{ vswitch_bridges }}",
                "register": task["register"], "loop_control": {"label": "{{ item.name }}"},
                "openvif.vswitch.vswitch_bridge": {
                    "name": "{{ item.name }}", "uplink": "{{ item.uplink | default(omit) }}",
                    "stp": "{{ item.stp | default(omit) }}",
                    "forward_delay": "{{ item.forward_delay | default(omit) }}",
                    "mtu": "{{ item.mtu | default(omit) }}"}}
        elif "openvif.vswitch.vswitch_port" in task:
            tasks[index] = {
                "name": "VIFs, one task per port", "loop": "{{ vswitch_ports }}", "register": task["register"],
                "loop_control": {"label": "{{ item.name }}"},
                "openvif.vswitch.vswitch_port": {"name": "{{ item.name }}", "bridge": "{{ item.bridge }}"}}
    replaced = [task["name"] for task in tasks if task["name"].endswith(("per bridge", "per port"))]
    if len(replaced) != 2:
        raise SystemExit(f"{SITE}: expected one vswitch_bridge and one vswitch_port task to rewrite, found {replaced}")
    path = directory / "site-per-port.yml"
    path.write_text(yaml.safe_dump(plays, sort_keys=False))
    return path


@dataclass
class Run:
    wall: float
    cpu: float       # user + system seconds of ansible-playbook and everything it ran (controller and hosts)
    rc: int
    stats: dict      # PLAY RECAP per host
    rows: list       # fleet_timing rows
    output: str

    def changed(self) -> int:
        return sum(counters.get("changed", 0) for counters in self.stats.values())

    def failed(self) -> int:
        return sum(counters.get("failed", 0) + counters.get("unreachable", 0) for counters in self.stats.values())

    def per_task(self) -> list[tuple[str, float]]:
        """Host-seconds per task name over the fleet, largest first: where the run's time goes."""
        totals: dict[str, float] = {}
        for row in self.rows:
            totals[row["task"]] = totals.get(row["task"], 0.0) + row["seconds"]
        return sorted(totals.items(), key=lambda item: -item[1])

    def per_host(self, actions: set | None = None) -> dict[str, float]:
        """Seconds each host spent in its tasks (only ``actions``, if given)."""
        totals: dict[str, float] = {}
        for row in self.rows:
            if actions is None or row["action"] in actions:
                totals[row["host"]] = totals.get(row["host"], 0.0) + row["seconds"]
        return totals


def ansible_env(directory: Path) -> dict[str, str]:
    venv_bin = Path(sys.executable).parent
    (directory / "ansible-tmp").mkdir(exist_ok=True)
    return dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
                ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".cache" / "collections"), ANSIBLE_NOCOLOR="1",
                ANSIBLE_LOCAL_TEMP=str(directory / "ansible-tmp"), ANSIBLE_CALLBACKS_ENABLED="fleet_timing",
                ANSIBLE_CALLBACK_PLUGINS=str(ROOT / "bench" / "callback_plugins"),
                PATH=f"{venv_bin}:{os.environ.get('PATH', '')}")


def run_play(directory: Path, inventory: Path, playbook: Path, forks: int, label: str,
             timeout: float = 1200) -> Run:
    timing = directory / f"timing-{label}.json"
    env = dict(ansible_env(directory), FLEET_TIMING_FILE=str(timing))
    argv = ["ansible-playbook", "-i", str(inventory), str(playbook), "-f", str(forks),
            "-e", json.dumps({"vif_mac_registry": str(directory / "vif_mac_registry.yml")})]
    before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
    # The whole tree runs on this machine, so its CPU is the fleet's work however busy the machine is.
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    (directory / f"output-{label}.txt").write_text(proc.stdout + proc.stderr)
    stats = {host: {key: int(value) for key, value in (pair.split("=") for pair in counters.split())
                    if value.isdigit()}
             for host, counters in RECAP.findall(proc.stdout)}
    rows = json.loads(timing.read_text()) if timing.exists() else []
    return Run(wall, cpu, proc.returncode, stats, rows, proc.stdout + proc.stderr)


def registry_size(directory: Path) -> int:
    path = directory / "vif_mac_registry.yml"
    return len((yaml.safe_load(path.read_text()) or {}).get("assignments", {})) if path.exists() else 0


def problems(fleet: Fleet, first: Run, second: Run, directory: Path) -> list[str]:
    """What is wrong with a form's two runs; empty when both did what a user expects."""
    found = []
    for name, run in (("first", first), ("second", second)):
        if run.rc != 0 or run.failed() or set(run.stats) != set(fleet.hosts):
            found.append(f"{name} run: rc={run.rc}, failed/unreachable={run.failed()}, recap for "
                         f"{len(run.stats)}/{len(fleet.hosts)} hosts; end of output:\n{run.output[-3000:]}")
    unchanged = [host for host, counters in first.stats.items() if not counters.get("changed")]
    if unchanged:
        found.append(f"first run changed nothing on {unchanged}")
    if second.changed():
        found.append(f"second run changed {second.changed()} tasks: "
                     f"{sorted({(row['host'], row['task']) for row in second.rows if row['changed']})[:10]}")
    attached, expected = fleet.attached(), fleet.expected()
    wrong = {host: {port: (attached[host].get(port), bridge) for port, bridge in ports.items()
                    if attached[host].get(port) != bridge}
             for host, ports in expected.items()}
    wrong = {host: ports for host, ports in wrong.items() if ports}
    if wrong:
        found.append(f"ports not on their bridge (kernel, declared): {dict(list(wrong.items())[:5])}")
    if registry_size(directory) != fleet.size * fleet.ports:
        found.append(f"the MAC registry holds {registry_size(directory)} assignments, not {fleet.size * fleet.ports}")
    return found


def run_form(size: int, ports: int, form: str, forks: int) -> dict[str, Any]:
    """A fresh fleet, the form's two runs, the checks; the fleet is gone when this returns."""
    fleet = Fleet(size, ports)
    directory = Path(tempfile.mkdtemp(prefix=f"fl-fleet-{size}-{form}-"))
    try:
        fleet.build()
        inventory = fleet.inventory(directory)
        playbook = SITE if form == "batch" else per_port_playbook(directory)
        first = run_play(directory, inventory, playbook, forks, "first")
        second = run_play(directory, inventory, playbook, forks, "second")
        result = {"size": size, "ports": ports, "form": form, "forks": forks, "directory": str(directory),
                  "problems": problems(fleet, first, second, directory)}
        for name, run in (("first", first), ("second", second)):
            network, every = run.per_host(NETWORK_ACTIONS), run.per_host()
            result[name] = {"wall": run.wall, "cpu": run.cpu, "changed": run.changed(), "rc": run.rc,
                            "network_per_host": statistics.mean(network.values()) if network else 0.0,
                            "network_per_host_max": max(network.values(), default=0.0),
                            "all_per_host": statistics.mean(every.values()) if every else 0.0,
                            "tasks": run.per_task()}
        if not result["problems"]:  # kept otherwise: the outputs and timings say what went wrong
            shutil.rmtree(directory, ignore_errors=True)
        return result
    finally:
        fleet.destroy()


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "n/a"


def report(results: list[dict], ports: int, forks: int) -> None:
    print(f"\nsite.yml, kernel datapath, {ports} ports per host on 2 bridges, forks {forks}, "
          "serial [1, 2, 50%, 100%], health gate probing the gateway")
    print("wall and CPU (user+system of the whole ansible-playbook tree) per run; per host: mean seconds of its "
          "network tasks (vswitch_bridge/vlan/port) and of all its tasks")
    print(f"{'hosts':>5} {'form':9} | {'first run':^23} | {'no-change run':^23} | {'per host, 1st run':^17} | "
          f"{'per host, no-change':^19}")
    print(f"{'':>5} {'':9} | {'wall s':>7} {'CPU s':>7} {'chg':>7} | {'wall s':>7} {'CPU s':>7} {'chg':>7} | "
          f"{'net s':>8} {'all s':>8} | {'net s':>9} {'all s':>9}")
    for r in results:
        first, second = r["first"], r["second"]
        print(f"{r['size']:>5} {r['form']:9} | {first['wall']:>7.1f} {first['cpu']:>7.1f} {first['changed']:>7} | "
              f"{second['wall']:>7.1f} {second['cpu']:>7.1f} {second['changed']:>7} | "
              f"{first['network_per_host']:>8.2f} {first['all_per_host']:>8.2f} | "
              f"{second['network_per_host']:>9.2f} {second['all_per_host']:>9.2f}")
    print("\nwhere the no-change run's time goes (host-seconds summed over the fleet, top 5 tasks):")
    for r in results:
        top = ", ".join(f"{name} {seconds:.0f}" for name, seconds in r["second"]["tasks"][:5])
        print(f"  {r['size']:>3} {r['form']:9} {top}")
    by = {(r["size"], r["form"]): r for r in results}
    sizes = sorted({r["size"] for r in results})
    print("\nper-port / batch (how much longer one task per port takes):")
    for size in sizes:
        if (size, "batch") in by and (size, "per-port") in by:
            b, p = by[(size, "batch")], by[(size, "per-port")]
            print(f"  {size:>3} hosts: first run wall {ratio(p['first']['wall'], b['first']['wall'])} "
                  f"CPU {ratio(p['first']['cpu'], b['first']['cpu'])}; "
                  f"no-change wall {ratio(p['second']['wall'], b['second']['wall'])} "
                  f"CPU {ratio(p['second']['cpu'], b['second']['cpu'])}; network tasks per host "
                  f"{ratio(p['first']['network_per_host'], b['first']['network_per_host'])} (first), "
                  f"{ratio(p['second']['network_per_host'], b['second']['network_per_host'])} (no-change)")
    if len(sizes) > 1:
        small, large = sizes[0], sizes[-1]
        print(f"\n{large} / {small} hosts ({large / small:.0f}x the hosts):")
        for form in FORMS:
            if (small, form) in by and (large, form) in by:
                s, g = by[(small, form)], by[(large, form)]
                print(f"  {form:9} first run wall {ratio(g['first']['wall'], s['first']['wall'])} "
                      f"CPU {ratio(g['first']['cpu'], s['first']['cpu'])}; "
                      f"no-change wall {ratio(g['second']['wall'], s['second']['wall'])} "
                      f"CPU {ratio(g['second']['cpu'], s['second']['cpu'])}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10,50", help="fleet sizes, comma-separated (default 10,50)")
    parser.add_argument("--ports", type=int, default=12, help="VIFs per host, 2 per VM (default 12)")
    parser.add_argument("--forks", type=int, default=8, help="ansible-playbook -f (default 8)")
    parser.add_argument("--forms", default=",".join(FORMS), help="batch,per-port (default both)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/fleet.py needs root (network namespaces)", file=sys.stderr)
        return 1
    # A TERM (a CI timeout) unwinds like Ctrl-C, through every finally that removes a fleet.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    results, failed = [], False
    start = time.perf_counter()
    print(f"load average at the start: {' '.join(f'{value:.2f}' for value in os.getloadavg())}", flush=True)
    for size in (int(value) for value in args.sizes.split(",")):
        for form in args.forms.split(","):
            print(f"== {size} hosts, {form}: building the fleet, site.yml twice", flush=True)
            result = run_form(size, args.ports, form, args.forks)
            results.append(result)
            print(f"   first {result['first']['wall']:.1f} s, no-change {result['second']['wall']:.1f} s "
                  f"(changed={result['second']['changed']})", flush=True)
            for problem in result["problems"]:
                failed = True
                print(f"   PROBLEM: {problem} (outputs in {result['directory']})", flush=True)
    if args.json:   # before the report: the figures survive a bug in printing them
        args.json.write_text(json.dumps(results, indent=1))
    report(results, args.ports, args.forks)
    print(f"\ntotal {time.perf_counter() - start:.0f} s; load average at the end: "
          f"{' '.join(f'{value:.2f}' for value in os.getloadavg())}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
