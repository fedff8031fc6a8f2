"""Benchmark: 1,000 ports on 10 bridges, kernel datapath, side by side in one run.

    .venv/bin/python bench/kernel_ports.py [--ports 1000] [--bridges 10] [--per-port-sample 100]

Each contender starts from the same fresh namespace holding the ports (tap devices, as KVM VIFs):
  ip -batch          the same work in one iproute2 process: the practical limit
  openvif (module)   one batch vswitch_bridge + one batch vswitch_port, timed inside the namespace
                     exactly as a module runs (read, plan, apply), without Ansible's own overhead
  openvif (play)     the same as an ansible-playbook run (wall clock, Ansible included)
  per-port tasks     one vswitch_port task per port, what users of other collections do today; run on a
                     sample of ports and scaled to all of them (printed as such)
Prints the figures and the ratios the goals are about. Root only; cleans up its namespaces.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
ENV = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
           ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".cache/collections"), PATH=f"{Path(PY).parent}:{os.environ['PATH']}")

WORKER = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch import actions
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.backends import open_host
spec = json.loads(sys.argv[2])
start = time.perf_counter()
changed = actions.bridge({"state": "present", "bridges": [{"name": name, "stp": False, "forward_delay": 0}
                                                           for name in spec["bridges"]]}, open_host(), False).changed
result = actions.port({"ports": spec["ports"], "purge": True}, open_host(), False)
print(json.dumps({"seconds": time.perf_counter() - start, "changed": changed or result.changed}))
"""


def sh(*argv: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kw)


def ip_batch(ns: str, lines: list[str]) -> float:
    with tempfile.NamedTemporaryFile("w", suffix=".ip", delete=False) as handle:
        handle.write("\n".join(lines) + "\n")
    start = time.perf_counter()
    sh("ip", "-n", ns, "-batch", handle.name)
    elapsed = time.perf_counter() - start
    os.unlink(handle.name)
    return elapsed


class World:
    def __init__(self, ports: int, bridges: int) -> None:
        self.bridges = [f"xenbr{b}" for b in range(bridges)]
        self.ports = [{"name": f"vif{i + 1}.0", "bridge": self.bridges[i % bridges]} for i in range(ports)]
        self.namespaces: list[str] = []

    def fresh(self) -> str:
        ns = "bk" + uuid.uuid4().hex[:8]
        sh("ip", "netns", "add", ns)
        self.namespaces.append(ns)
        ip_batch(ns, [f"tuntap add mode tap name {p['name']}" for p in self.ports])
        return ns

    def cleanup(self) -> None:
        for ns in self.namespaces:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def run_ip_batch(world: World) -> float:
    ns = world.fresh()
    lines = [f"link add {b} type bridge stp_state 0 forward_delay 0" for b in world.bridges]
    lines += [f"link set {b} up" for b in world.bridges]
    for port in world.ports:
        lines += [f"link set dev {port['name']} master {port['bridge']}", f"link set dev {port['name']} up"]
    return ip_batch(ns, lines)


def run_module_time(ns: str, world: World) -> dict:
    spec = json.dumps({"bridges": world.bridges, "ports": world.ports})
    out = sh("ip", "netns", "exec", ns, PY, "-c", WORKER, str(ROOT / ".cache/collections"), spec).stdout
    return json.loads(out)


def inventory(ns: str, directory: Path) -> Path:
    path = directory / "inventory.yml"
    path.write_text(json.dumps({"all": {"hosts": {"hv": {
        "ansible_connection": "openvif.vswitch.netns", "ansible_netns_name": ns, "ansible_python_interpreter": PY}}}}))
    return path


def playbook(directory: Path, world: World, per_port: list | None = None) -> Path:
    tasks = [{"name": "bridges", "openvif.vswitch.vswitch_bridge": {
        "bridges": [{"name": name, "stp": False, "forward_delay": 0} for name in world.bridges]}}]
    if per_port is None:
        tasks.append({"name": "ports", "openvif.vswitch.vswitch_port": {"ports": world.ports, "purge": True}})
    else:
        tasks.append({"name": "one task per port", "loop": per_port,
                      "openvif.vswitch.vswitch_port": {"name": "{{ item.name }}", "bridge": "{{ item.bridge }}"}})
    path = directory / f"play-{len(per_port or [])}.yml"
    path.write_text(json.dumps([{"hosts": "hv", "gather_facts": False, "tasks": tasks}]))
    return path


def run_play(inv: Path, play: Path) -> float:
    start = time.perf_counter()
    sh("ansible-playbook", "-i", str(inv), str(play), env=ENV, timeout=3600)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ports", type=int, default=1000)
    parser.add_argument("--bridges", type=int, default=10)
    parser.add_argument("--per-port-sample", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3, help="fresh runs per contender; the best is kept")
    args = parser.parse_args()
    world = World(args.ports, args.bridges)
    tmp = Path(tempfile.mkdtemp(prefix="openvif-bench-"))
    try:
        t_ip = min(run_ip_batch(world) for _round in range(args.repeat))
        firsts, agains = [], []
        for _round in range(args.repeat):
            ns = world.fresh()
            firsts.append(run_module_time(ns, world))
            agains.append(run_module_time(ns, world))
            assert firsts[-1]["changed"] and not agains[-1]["changed"], (firsts[-1], agains[-1])
        first = min(firsts, key=lambda r: r["seconds"])
        again = min(agains, key=lambda r: r["seconds"])

        ns_play = world.fresh()
        inv = inventory(ns_play, tmp)
        play = playbook(tmp, world)
        t_play_first = run_play(inv, play)
        t_play_again = run_play(inv, play)

        sample = world.ports[: args.per_port_sample]
        ns_pp = world.fresh()
        inv_pp = inventory(ns_pp, tmp)
        play_pp = playbook(tmp, world, sample)
        t_pp_first = run_play(inv_pp, play_pp) * len(world.ports) / len(sample)
        t_pp_again = run_play(inv_pp, play_pp) * len(world.ports) / len(sample)
    finally:
        world.cleanup()

    n, b = len(world.ports), len(world.bridges)
    print(f"kernel datapath: {n} ports on {b} bridges (tap devices), best of {args.repeat} fresh runs "
          f"(ip -batch, module time), {time.strftime('%Y-%m-%d')}")
    print(f"{'contender':34} {'first converge':>15} {'no-change run':>15}")
    print(f"{'ip -batch (practical limit)':34} {t_ip:14.3f}s {'-':>15}")
    print(f"{'openvif batch, module time':34} {first['seconds']:14.3f}s {again['seconds']:14.3f}s")
    print(f"{'openvif batch, ansible-playbook':34} {t_play_first:14.3f}s {t_play_again:14.3f}s")
    scaled = f"per-port tasks (x{n // len(sample)} of {len(sample)})"
    print(f"{scaled:34} {t_pp_first:14.3f}s {t_pp_again:14.3f}s")
    print("ratios:")
    print(f"  (a) first converge, openvif module time / ip -batch     = {first['seconds'] / t_ip:6.2f}x  (goal <= 3x)")
    print(f"  (b) no-change run, openvif module time                  = {again['seconds']:6.3f}s  (goal < 2 s)")
    print(f"  (b) no-change run, per-port tasks / openvif playbook   = {t_pp_again / t_play_again:6.1f}x"
          "  (goal >= 20x)")
    print(f"      first converge, per-port tasks / openvif playbook  = {t_pp_first / t_play_first:6.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
