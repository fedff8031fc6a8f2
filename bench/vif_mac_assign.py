"""Benchmark: fleet-wide VIF MAC assignment for 100,000 VIFs, against the 2 s goal.

    .venv/bin/python bench/vif_mac_assign.py [--vifs 100000] [--hosts 1000] [--seen 2000] [--repeat 3]

Scenarios, all through ``mac.plan_fleet`` exactly as the vif_mac role calls it (plain dicts in,
validation, planning, the registry text out):
  fresh     every VIF new, empty registry, host NICs' MACs seen in use
  rerun     the registry from 'fresh', every VIF's interface already wearing its MAC (the steady state)
  churn     the registry from 'fresh', 5 % of the VMs removed and as many new ones added
Side by side on the same keys, the core ``mac.assign`` (no validation) and two naive baselines:
  random+retry  random.Random(key) draws until an unused address comes up (seeded, so deterministic)
  sha256+retry  sha256(key#attempt) until unused
and, to show why probing is needed at all, how many collisions a plain hash would have given.
Times are the best of --repeat runs (wall clock, perf_counter); peak memory is measured by
tracemalloc in a separate run (tracing slows Python down, so it never pollutes a timing).
"""
from __future__ import annotations

import argparse
import gc
import hashlib
import os
import random
import resource
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / ".cache" / "collections"))
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch import mac as M  # noqa: E402

GOAL = 2.0
XEN = M.XEN_RANGE


def fleet(vifs: int, hosts: int, tag: str = "vm") -> dict[str, list[dict]]:
    declared: dict[str, list[dict]] = {f"hv{h:04d}": [] for h in range(hosts)}
    for i in range(vifs):
        vm, dev = divmod(i, 2)  # two NICs per VM, on the VM's host; domids count up per host
        domid = vm // hosts + (1 if tag == "vm" else 100_000)
        declared[f"hv{vm % hosts:04d}"].append({"vm": f"{tag}{vm:06d}", "device": dev,
                                                "interface": f"vif{domid}.{dev}", "bridge": "xenbr0"})
    return declared


def host_nics(hosts: int, seen: int, seed: int = 7) -> dict[str, list[dict]]:
    rnd = random.Random(seed)
    out: dict[str, list[dict]] = {f"hv{h:04d}": [] for h in range(hosts)}
    for n in range(seen):
        # Half of them in the Xen range (VMs someone configured by hand), half ordinary NICs.
        mac = XEN.address(rnd.getrandbits(24)) if n % 2 else M.int_to_mac(0x525400000000 | rnd.getrandbits(24))
        out[f"hv{n % hosts:04d}"].append({"interface": f"eth{n // hosts}", "mac": mac})
    return out


MEDIANS: list[float] = []
CPU: list[float] = []


def best(fn, repeat: int) -> tuple[float, object]:
    """Best wall time of ``repeat`` runs and the last result; the median wall time goes to MEDIANS and
    the best CPU time (process_time: what the code costs, without waiting for a busy machine) to CPU."""
    times, cpu, result = [], [], None
    for _round in range(repeat):
        gc.collect()
        t, c = time.perf_counter(), time.process_time()
        result = fn()
        cpu.append(time.process_time() - c)
        times.append(time.perf_counter() - t)
    MEDIANS.append(statistics.median(times))
    CPU.append(min(cpu))
    return min(times), result


def peak_mib(fn) -> float:
    gc.collect()
    tracemalloc.start()
    fn()
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def random_retry(keys: list[str], taken: set[int]) -> dict[str, int]:
    used, out = set(taken), {}
    for key in keys:
        rnd = random.Random(key)
        while True:
            address = XEN.base | rnd.getrandbits(24)
            if address not in used:
                break
        used.add(address)
        out[key] = address
    return out


def sha_retry(keys: list[str], taken: set[int]) -> dict[str, int]:
    used, out = set(taken), {}
    for key in keys:
        attempt = 0
        while True:
            digest = hashlib.sha256(f"{key}#{attempt}".encode()).digest()
            address = XEN.base | int.from_bytes(digest[:3], "big")
            if address not in used:
                break
            attempt += 1
        used.add(address)
        out[key] = address
    return out


def plain_hash_collisions(keys: list[str]) -> int:
    addresses = [int.from_bytes(hashlib.sha256(k.encode()).digest()[:3], "big") for k in keys]
    return len(addresses) - len(set(addresses))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vifs", type=int, default=100_000)
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--seen", type=int, default=2000, help="host NIC MACs seen in use across the fleet")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    declared = fleet(args.vifs, args.hosts)
    nics = host_nics(args.hosts, args.seen)
    print(f"vif_mac fleet assignment: {args.vifs:,} VIFs on {args.hosts:,} hosts, {args.seen:,} NIC MACs seen; "
          f"range {XEN.pattern} ({XEN.size:,} addresses, load {args.vifs / XEN.size:.2%}); "
          f"Python {sys.version.split()[0]}; best of {args.repeat}", flush=True)

    t_fresh, fresh = best(lambda: M.plan_fleet(None, declared, nics), args.repeat)
    registry = {"version": 1, "prefix": fresh["prefix"], "assignments": fresh["registry"]}
    assert len(set(fresh["registry"].values())) == args.vifs, "duplicate assignment"

    wearing = {host: list(links) for host, links in nics.items()}
    for host, vifs in fresh["assignments"].items():
        wearing[host] += [{"interface": v["interface"], "mac": v["mac"]} for v in vifs]
    t_rerun, rerun = best(lambda: M.plan_fleet(registry, declared, wearing), args.repeat)
    assert not rerun["registry_changed"] and not rerun["duplicates"]

    churned = {host: vifs[: len(vifs) - len(vifs) // 20] for host, vifs in declared.items()}
    newcomers = fleet(args.vifs // 20, args.hosts, tag="new")
    churned = {host: churned[host] + newcomers[host] for host in churned}
    t_churn, churn = best(lambda: M.plan_fleet(registry, churned, nics), args.repeat)
    assert all(churn["registry"][k] == m for k, m in fresh["registry"].items())

    keys = sorted(d["key"] for vifs in fresh["assignments"].values() for d in vifs)
    taken = {a for a in (M.mac_to_int(n["mac"]) for links in nics.values() for n in links) if XEN.contains(a)}
    t_core, _result = best(lambda: M.assign(XEN, {}, keys, taken), args.repeat)
    t_random, _result = best(lambda: random_retry(keys, taken), args.repeat)
    t_sha, _result = best(lambda: sha_retry(keys, taken), args.repeat)
    collisions = plain_hash_collisions(keys)

    mem_fresh = peak_mib(lambda: M.plan_fleet(None, declared, nics))
    mem_rerun = peak_mib(lambda: M.plan_fleet(registry, declared, wearing))
    mem_core = peak_mib(lambda: M.assign(XEN, {}, keys, taken))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    rows = [
        ("plan_fleet fresh (role path)", t_fresh, mem_fresh, f"{len(fresh['added']):,} new"),
        ("plan_fleet rerun (steady state)", t_rerun, mem_rerun, f"{rerun['kept']:,} kept, 0 changed"),
        ("plan_fleet churn (5 % out, 5 % in)", t_churn, None,
         f"{len(churn['added']):,} new, {len(churn['undeclared']):,} kept reserved"),
        ("mac.assign core (no validation)", t_core, mem_core, "unique, deterministic"),
        ("baseline random.Random(key)+retry", t_random, None, "unique only because of the retry set"),
        ("baseline sha256(key#n)+retry", t_sha, None, "unique only because of the retry set"),
    ]
    print(f"\n{'':38} {'wall':>8} {'cpu':>8} {'vs goal':>8} {'peak mem':>12}  notes")
    for (name, seconds, mem, note), cpu in zip(rows, CPU, strict=True):
        mem_text = f"{mem:8.1f} MiB" if mem is not None else f"{'-':>12}"
        print(f"{name:38} {seconds:7.3f}s {cpu:7.3f}s {seconds / GOAL:7.0%} {mem_text}  {note}")
    c_fresh, c_core, c_random, c_sha = CPU[0], CPU[3], CPU[4], CPU[5]
    print(f"\nratios (cpu time): random+retry / core = {c_random / c_core:.2f}, sha256+retry / core = "
          f"{c_sha / c_core:.2f}, role path fresh / random+retry = {c_fresh / c_random:.2f} "
          "(the role path also validates every declaration and renders the registry)")
    print(f"a plain hash of the key (no probing) would give {collisions:,} colliding VIFs out of {args.vifs:,} "
          f"(expected about {args.vifs ** 2 / (2 * XEN.size):,.0f})")
    print(f"process max RSS {rss:.0f} MiB")
    worst, worst_cpu = max(t_fresh, t_rerun, t_churn), max(CPU[:3])
    load = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} CPUs, load average {load:.2f} (wall times inflate when load > CPUs)")
    print(f"goal: {args.vifs:,} VIFs fleet-wide in under {GOAL:.0f} s -> wall {'MET' if worst < GOAL else 'MISSED'} "
          f"(slowest scenario {worst:.3f}s, best of {args.repeat}; medians: fresh {MEDIANS[0]:.3f}s, "
          f"rerun {MEDIANS[1]:.3f}s, churn {MEDIANS[2]:.3f}s), cpu {'MET' if worst_cpu < GOAL else 'MISSED'} "
          f"(slowest {worst_cpu:.3f}s)")
    return 0 if worst < GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
