#!/usr/bin/env python3
"""Build, prove and remove the local lab described by inventories/lab/topology.yml.

    labctl.py up       (re)create the namespaces: physical network, hypervisors, VMs with their VIFs
    labctl.py macs     give each VM's NICs the MACs site.yml's vif_mac role assigned (its registry)
    labctl.py prove    print each VM NIC's MAC and where it came from, then ping what must reach and
                       what must not; exit 1 if the switches disagree
    labctl.py down     delete every namespace of the lab
    labctl.py status   list the lab's namespaces and daemons; exit 0 when up, 3 when not

The lab is scaffolding: it uses iproute2 to make the world (namespaces, veth, the
physical switch), while the hypervisors' virtual networks are left to site.yml.
`down` and `status` use only the standard library, so they work from a fresh clone without .venv.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from netlab import NetLab, sh  # noqa: E402

TOPOLOGY = ROOT / "inventories" / "lab" / "topology.yml"
RUN_DIR = Path("/run/openvif-lab")   # the inventory's lab_run_dir
MODULE_UTILS = ROOT / "plugins" / "module_utils"


def load(path: Path = TOPOLOGY) -> dict:
    import yaml  # from .venv: only up and prove need the whole topology

    with open(path) as handle:
        return yaml.safe_load(handle)


def load_prefix(path: Path = TOPOLOGY) -> str:
    """The topology's namespace prefix, without PyYAML (down/status must run before bootstrap)."""
    match = re.search(r"^prefix:\s*([A-Za-z0-9_-]+)\s*(#.*)?$", path.read_text(), re.MULTILINE)
    if match is None:
        raise SystemExit(f"{path}: no top-level 'prefix: <name>' line")
    return match.group(1)


def lab_namespaces(prefix: str) -> list[str]:
    if not os.path.isdir("/run/netns"):
        return []
    return sorted(name for name in os.listdir("/run/netns") if name.startswith(prefix + "-"))


def daemon_dirs(prefix: str) -> list[Path]:
    """The run directories labctl made for the lab's daemons (whatever the topology says today)."""
    return sorted(RUN_DIR.glob(f"{prefix}-*")) if RUN_DIR.is_dir() else []


def down(prefix: str) -> None:
    for run in daemon_dirs(prefix):
        stop_vswitchd(run.name)
    NetLab(prefix=prefix).destroy(lab_namespaces(prefix))


def daemon_pid(ns: str) -> int:
    """PID of the lab's running vswitchd of ``ns``, 0 if none is running."""
    run = RUN_DIR / ns
    try:
        pid = int((run / "vswitchd.pid").read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return 0
    return pid if b"vswitch.daemon" in cmdline and str(run).encode() in cmdline else 0


def status(prefix: str) -> bool:
    """Print the lab's namespaces and daemons; True when the lab is up."""
    names = lab_namespaces(prefix)
    if not names:
        print(f"lab down: no namespaces {prefix}-* (start it with scripts/lab.sh up)")
        return False
    for name in names:
        brief = sh("ip", "-n", name, "-br", "link", check=False).stdout.splitlines()
        links = " ".join(line.split()[0].split("@")[0] for line in brief if line.split() and not line.startswith("lo "))
        pid = daemon_pid(name)
        daemon = f"  [vswitchd pid {pid}, socket {RUN_DIR / name / 'vswitchd.sock'}]" if pid else ""
        print(f"{name}: {links}{daemon}")
    stale = [run.name for run in daemon_dirs(prefix) if (run / "vswitchd.pid").exists() and not daemon_pid(run.name)]
    for name in stale:
        print(f"{name}: vswitchd is NOT running (log: {RUN_DIR / name / 'vswitchd.log'})")
    print(f"lab up: {len(names)} namespaces" + (f", {len(stale)} daemon(s) down" if stale else ""))
    return not stale


def start_vswitchd(ns: str, timeout: float = 15.0) -> int:
    """Run vswitchd inside ``ns`` with its own state file and socket under RUN_DIR/<ns>/; return its PID."""
    run = RUN_DIR / ns
    run.mkdir(parents=True, exist_ok=True)
    socket = run / "vswitchd.sock"
    with open(run / "vswitchd.log", "ab") as log:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-m", "vswitch.daemon", "--state-file",
             str(run / "vswitchd.json"), "--socket", str(socket)],
            env={**os.environ, "PYTHONPATH": str(MODULE_UTILS)}, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
            start_new_session=True)
    (run / "vswitchd.pid").write_text(str(proc.pid))
    sys.path.insert(0, str(MODULE_UTILS))
    from vswitch.rpc import Client

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"vswitchd in {ns} exited: {(run / 'vswitchd.log').read_text()[-2000:]}")
        try:
            with Client(str(socket), timeout=2) as client:
                if client.call("ping")["pid"] == proc.pid:
                    return proc.pid
        except Exception:  # noqa: BLE001 - not listening yet
            time.sleep(0.1)
    raise SystemExit(f"vswitchd in {ns} did not answer within {timeout}s")


def stop_vswitchd(ns: str) -> None:
    """Stop the lab's vswitchd of ``ns`` by the PID labctl recorded, if it is still that daemon."""
    run = RUN_DIR / ns
    pid = daemon_pid(ns)
    if pid:
        os.kill(pid, signal.SIGTERM)
        for _attempt in range(100):
            if not Path(f"/proc/{pid}").exists():
                break
            time.sleep(0.05)
        else:
            os.kill(pid, signal.SIGKILL)
    for name in ("vswitchd.pid", "vswitchd.json", "vswitchd.sock"):
        (run / name).unlink(missing_ok=True)


def up(topo: dict) -> NetLab:
    down(topo["prefix"])
    # site.yml's vif_mac role keeps the lab's MAC registry here (on the controller, as in real use).
    (ROOT / ".cache" / "lab").mkdir(parents=True, exist_ok=True)
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
    for hv, spec in topo["hypervisors"].items():
        if spec.get("vswitchd"):
            start_vswitchd(f"{topo['prefix']}-{hv}")
    for vm, spec in topo["vms"].items():
        vm_ns = lab.ns(vm)
        host_ns = f"{topo['prefix']}-{spec['host']}"
        for devid, address in spec["nics"].items():
            lab.vm(host_ns, spec["domid"], int(devid), address=address, vm_ns=vm_ns)
    return lab


def registry(prefix: str) -> Path:
    """site.yml's vif_mac registry for this lab (its vif_mac_registry variable)."""
    return ROOT / ".cache" / "lab" / f"{prefix}-vif_mac_registry.yml"


def assigned(prefix: str) -> dict[str, str]:
    import yaml

    path = registry(prefix)
    if not path.exists():
        return {}
    return (yaml.safe_load(path.read_text()) or {}).get("assignments", {})


def vm_nics(topo: dict) -> list[tuple[str, int]]:
    return [(vm, int(devid)) for vm, spec in topo["vms"].items() for devid in spec["nics"]]


def macs(topo: dict) -> int:
    """The toolstack's part: a VM starts with the MAC its config names (Xen's vif = ['mac=...']).

    site.yml's vif_mac role assigns them fleet-wide; the lab's VMs are namespaces already wired, so
    their NICs take the registry's MACs here, after the first run wrote it.
    """
    table = assigned(topo["prefix"])
    if not table:
        raise SystemExit(f"no MAC registry at {registry(topo['prefix'])}: run site.yml first")
    lab = NetLab(prefix=topo["prefix"])
    count = 0
    for vm, devid in vm_nics(topo):
        mac = table.get(f"{vm}/{devid}")
        if mac:
            lab.run(f"{topo['prefix']}-{vm}", "ip", "link", "set", "dev", f"eth{devid}", "address", mac)
            count += 1
    return count


def nic_mac(ns: str, nic: str) -> str:
    return json.loads(sh("ip", "-n", ns, "-j", "link", "show", nic).stdout)[0]["address"]


def print_macs(topo: dict) -> None:
    table = assigned(topo["prefix"])
    print(f"{'vm':6} {'nic':5} {'mac':18} from")
    for vm, devid in vm_nics(topo):
        mac = nic_mac(f"{topo['prefix']}-{vm}", f"eth{devid}")
        key = f"{vm}/{devid}"
        source = (f"vif_mac registry, {key} ({registry(topo['prefix']).relative_to(ROOT)})" if table.get(key) == mac
                  else "random: not the registry's" + (f" {table[key]}" if key in table else " (no entry)"))
        print(f"{vm:6} eth{devid:<2} {mac:18} {source}")
    print()


def prove(topo: dict) -> bool:
    lab = NetLab(prefix=topo["prefix"])
    print_macs(topo)
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
    parser.add_argument("action", choices=["up", "down", "macs", "prove", "status"])
    parser.add_argument("--topology", type=Path, default=TOPOLOGY)
    parser.add_argument("--prefix", help="name the lab's namespaces <prefix>-* (default: the topology's)")
    args = parser.parse_args()
    # OPENVIF_LAB_PREFIX: a private lab beside the user's (tests); the inventory's lab_prefix reads it too.
    prefix = args.prefix or os.environ.get("OPENVIF_LAB_PREFIX") or load_prefix(args.topology)
    if args.action == "down":
        down(prefix)
        print("lab down")
        return 0
    if args.action == "status":
        return 0 if status(prefix) else 3   # 3: not running, as for `systemctl status`
    topo = {**load(args.topology), "prefix": prefix}
    if args.action == "up":
        up(topo)
        print("lab up:", " ".join(lab_namespaces(prefix)))
        return 0
    if not lab_namespaces(prefix):
        print(f"the lab is not up (no namespaces {prefix}-*): scripts/lab.sh up", file=sys.stderr)
        return 1
    if args.action == "macs":
        print(f"VM NICs given their assigned MACs: {macs(topo)}")
        return 0
    return 0 if prove(topo) else 1


if __name__ == "__main__":
    sys.exit(main())
