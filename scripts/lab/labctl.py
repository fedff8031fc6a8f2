#!/usr/bin/env python3
"""Build, prove and remove the local lab described by inventories/lab/topology.yml.

    labctl.py up       (re)create the namespaces: physical network, hypervisors, VMs with their VIFs
    labctl.py prove    ping what must reach and what must not; exit 1 if the switches disagree
    labctl.py down     delete every namespace of the lab
    labctl.py status   list the lab's namespaces

The lab is scaffolding: it uses iproute2 to make the world (namespaces, veth, the
physical switch), while the hypervisors' virtual networks are left to site.yml.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from netlab import NetLab, sh  # noqa: E402

TOPOLOGY = ROOT / "inventories" / "lab" / "topology.yml"


def load(path: Path = TOPOLOGY) -> dict:
    with open(path) as handle:
        return yaml.safe_load(handle)


def lab_namespaces(prefix: str) -> list[str]:
    if not os.path.isdir("/run/netns"):
        return []
    return sorted(name for name in os.listdir("/run/netns") if name.startswith(prefix + "-"))


def down(topo: dict) -> None:
    NetLab(prefix=topo["prefix"]).destroy(lab_namespaces(topo["prefix"]))


def up(topo: dict) -> NetLab:
    down(topo)
    lab = NetLab(prefix=topo["prefix"])
    phys = topo["physical"]
    phys_ns = lab.ns(phys["namespace"])
    lab.run(phys_ns, "ip", "link", "add", phys["switch"], "type", "bridge", "stp_state", "0", "forward_delay", "0")
    lab.run(phys_ns, "ip", "link", "set", phys["switch"], "up")
    for address in phys.get("addresses", []):
        lab.run(phys_ns, "ip", "addr", "add", address, "dev", phys["switch"])
    for hv, spec in topo["hypervisors"].items():
        hv_ns = lab.ns(hv)
        if spec.get("uplink"):
            lab.link(hv_ns, spec["uplink"], phys_ns, f"{hv}-p")
            lab.run(phys_ns, "ip", "link", "set", f"{hv}-p", "master", phys["switch"])
    for vm, spec in topo["vms"].items():
        vm_ns = lab.ns(vm)
        host_ns = f"{topo['prefix']}-{spec['host']}"
        for devid, address in spec["nics"].items():
            lab.vm(host_ns, spec["domid"], int(devid), address=address, vm_ns=vm_ns)
    return lab


def prove(topo: dict) -> bool:
    lab = NetLab(prefix=topo["prefix"])
    ok = True
    print(f"{'from':6} {'to':16} {'expected':9} {'result':9} why")
    for kind, cases in (("reach", topo["expect"]["reach"]), ("isolated", topo["expect"]["isolated"])):
        for vm, target, why in cases:
            ns = f"{topo['prefix']}-{vm}"
            reached = lab.ping_until(ns, target, attempts=5) if kind == "reach" else lab.ping(ns, target, count=2)
            good = reached == (kind == "reach")
            ok &= good
            verdict = "reaches" if reached else "no reply"
            print(f"{vm:6} {target:16} {kind:9} {verdict:9} {why}{'' if good else '   <-- WRONG'}")
    print("lab proof:", "every VM reaches what it should and nothing else" if ok else "FAILED")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["up", "down", "prove", "status"])
    parser.add_argument("--topology", type=Path, default=TOPOLOGY)
    parser.add_argument("--prefix", help="name the lab's namespaces <prefix>-* (default: the topology's)")
    args = parser.parse_args()
    topo = load(args.topology)
    if args.prefix:
        topo["prefix"] = args.prefix
    if args.action == "up":
        up(topo)
        print("lab up:", " ".join(lab_namespaces(topo["prefix"])))
    elif args.action == "down":
        down(topo)
        print("lab down")
    elif args.action == "prove":
        return 0 if prove(topo) else 1
    else:
        for name in lab_namespaces(topo["prefix"]):
            print(name, sh("ip", "-n", name, "-br", "link", check=False).stdout.strip().replace("\n", "; "))
    return 0


if __name__ == "__main__":
    sys.exit(main())
