"""``python3 -m vswitch.boot``: rebuild this host's declared kernel-datapath networks at boot.

The kernel forgets every bridge when the host reboots; module runs keep what they declared in
the declaration (``declared.py``). This reads it and makes the host match through the same
model, planner and kernel backend as the modules, so there is no second description of how a
network is made. It only adds and sets: nothing the declaration does not name is touched.

VIFs exist only while their VM runs, so declared ports that are absent at boot are skipped (and
said so); the uplinks, veths and other ports present are attached. A damaged declaration never
stops boot: the last good copy is restored instead and the command exits non-zero, naming the
file and what is wrong. The exit status is 0 when the host matches its declaration, 1 when
something could not be restored (each said on stderr), 2 when there was nothing usable to restore.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Optional

from .declared import Declaration, DeclarationError, DeclarationStore
from .errors import VswitchError
from .host import Host
from .model import Change, Features, HostState
from .plan import plan_bridge, plan_ports, plan_vlan, simulate

PROG = "openvif-boot"


@dataclass
class Step:
    """The changes that restore one declared object, applied together."""

    what: str
    changes: list[Change]


@dataclass
class BootPlan:
    steps: list[Step] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)      # what is skipped on purpose
    failures: list[str] = field(default_factory=list)   # what cannot be restored

    @property
    def changes(self) -> list[Change]:
        return [change for step in self.steps for change in step.changes]


def plan_boot(decl: Declaration, state: HostState, features: Mapping[str, Features]) -> BootPlan:
    """Bridges, then VLAN networks, then ports, each planned against the state the earlier ones leave."""
    result = BootPlan()
    planned = state

    def add(what: str, changes: Sequence[Change], later_plans_see_it: bool = True) -> None:
        nonlocal planned
        if changes:
            result.steps.append(Step(what, list(changes)))
            if later_plans_see_it:
                planned = simulate(planned, changes)

    for name in sorted(decl.bridges):
        spec = decl.bridge_spec(name)
        # A bond is made anew from its members (the kernel forgot the bonding device): they must be there.
        needed = list(spec.bond.members or ()) if spec.bond is not None else [spec.uplink] if spec.uplink else []
        absent = [nic for nic in needed if nic not in planned.links]
        if absent:
            missing = ", ".join(absent)
            what = f"bond {spec.uplink}'s member(s) {missing} are" if spec.bond else f"uplink {spec.uplink} is"
            result.notes.append(f"bridge {name}: {what} absent; the bridge is restored without it")
            spec = replace(spec, uplink=None, bond=None)
        try:
            add(f"bridge {name}", plan_bridge(spec, planned, features))
        except VswitchError as err:
            result.failures.append(f"bridge {name}: {err.message}")
    for name in sorted(decl.vlans):
        try:
            add(f"VLAN network {name}", plan_vlan(decl.vlan_spec(name), planned, features))
        except VswitchError as err:
            result.failures.append(f"VLAN network {name}: {err.message}")
    for name in sorted(decl.ports):
        spec = decl.port_spec(name)
        if name not in planned.links:
            result.notes.append(f"port {name} of {spec.bridge} is absent (a VIF whose VM is not running); skipped")
            continue
        if spec.bridge not in planned.bridges:
            result.failures.append(f"port {name}: bridge {spec.bridge} does not exist and is not declared here")
            continue
        try:
            # Ports come last and each names only itself: no plan after it needs to see it, so the
            # state is not simulated 1,000 times over (most of the planning time on a large host).
            add(f"port {name}", plan_ports([spec], planned, features), later_plans_see_it=False)
        except VswitchError as err:
            result.failures.append(f"port {name}: {err.message.replace('ports[0].', '')}")
    return result


def restore(host: Host, plan: BootPlan, before: HostState) -> tuple[int, list[str]]:
    """Apply the plan in one transaction; if the datapath refuses it, object by object, so one bad
    object does not keep the others down. Returns how many changes were made and what failed."""
    if not plan.steps:
        return 0, []
    try:
        host.apply(plan.changes, before)
        return len(plan.changes), []
    except VswitchError:
        pass   # rolled back whole: retried step by step below, where the failing one is named
    made, failures = 0, []
    for step in plan.steps:
        try:
            host.apply(step.changes, host.read())
            made += len(step.changes)
        except VswitchError as err:
            failures.append(f"{step.what}: {err.message}")
    return made, failures


def _kernel_host() -> Host:
    from .kernel import KernelBackend

    # light: pyroute2 (a large import) is opened only if a change needs it (VLANs, bonds); bridges,
    # attaches and uplink markers go out as rtnl.py's own requests.
    return Host([KernelBackend(light=True)])


def say(line: str) -> None:
    sys.stdout.write(line + "\n")


def complain(line: str) -> None:
    sys.stderr.write(line + "\n")


def main(argv: Optional[Sequence[str]] = None, host: Optional[Host] = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m vswitch.boot", description=(
        "Restore the networks declared on this host's kernel datapath (in the network namespace it runs in)."))
    parser.add_argument("--state-dir", help="where the declaration is (default: $OPENVIF_STATE_DIR or "
                                            "/var/lib/openvif)")
    parser.add_argument("--check", action="store_true", help="print what would be done; change nothing")
    args = parser.parse_args(argv)
    started = time.monotonic()
    store = DeclarationStore(args.state_dir)
    status = 0
    try:
        decl, problem = store.load()
    except DeclarationError as err:
        complain(f"{PROG}: {err.message}; nothing restored")
        return 2
    if problem is not None:
        complain(f"{PROG}: {problem.message}; restoring the last good copy {store.good_path}")
        status = 1
    source = store.good_path if problem is not None else store.path
    say(f"{PROG}: declaration {source}: {len(decl.bridges)} bridges, {len(decl.vlans)} VLAN networks, "
        f"{len(decl.ports)} ports")
    try:
        host = host or _kernel_host()
    except ModuleNotFoundError as err:
        complain(f"{PROG}: cannot reach the kernel datapath: {err} (install python3-pyroute2)")
        return 2
    state = host.read()
    plan = plan_boot(decl, state, host.features)
    for step in plan.steps:
        for change in step.changes:
            say(f"{'would ' if args.check else ''}{change.describe()}")
    for note in plan.notes:
        say(f"{PROG}: {note}")
    failures = list(plan.failures)
    made = 0
    if not args.check:
        made, failed = restore(host, plan, state)
        failures.extend(failed)
    for failure in failures:
        complain(f"{PROG}: cannot restore {failure}")
    elapsed = time.monotonic() - started
    if args.check:
        say(f"{PROG}: would make {len(plan.changes)} changes ({elapsed:.2f} s)")
    elif made or failures:
        say(f"{PROG}: made {made} changes, {len(failures)} failures ({elapsed:.2f} s)")
    else:
        say(f"{PROG}: the host already matches its declaration ({elapsed:.2f} s)")
    return 1 if failures else status


if __name__ == "__main__":
    raise SystemExit(main())
