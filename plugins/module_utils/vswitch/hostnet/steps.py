"""The ``vswitch_host_ip`` module's steps: apply (up to verified), confirm, report."""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .. import kernel_bonds
from ..errors import BackendError, ConflictError, NotFoundError, ValidationError
from ..result import Result
from . import bond_uplink, clients, guard, move6, netops, snapshot, transaction
from .spec import HostIpSpec

STEPS = ("apply", "confirm", "report")
CONFIRM_WAIT = 15.0


def run(params: Mapping[str, Any], context: Any) -> Result:
    step = params.get("step") or "apply"
    if step not in STEPS:
        raise ValidationError("step", step, f"must be one of {', '.join(STEPS)}")
    spec = HostIpSpec.from_params(params)
    state_dir = params.get("state_dir") or guard.STATE_DIR
    journal = guard.Journal(state_dir, spec.bridge)
    if step == "apply":
        return _apply(spec, journal, state_dir, params, context)
    token = params.get("token")
    if not token:
        raise ValidationError("token", token, f"is required with step: {step} (the token step: apply returned)")
    if step == "confirm":
        return _confirm(journal, str(token), context)
    return _report(journal, str(token))


def _values(spec: HostIpSpec, **extra: Any) -> dict[str, Any]:
    """The addressing as the persistent formats need it; its IPv6 part is what the bridge carries when
    nothing was declared (the uplink's own, moved)."""
    addressing = {**spec.addressing(), **move6.addressing6(spec, extra.get("state"))}
    bond = None
    if spec.bond is not None:   # with the driver's option names for the formats that use them (BONDING_OPTS...)
        record = spec.bond.record()
        bond = {"name": spec.bond.name, **record, "driver_options": kernel_bonds.driver_options(record)}
    return {"bridge": spec.bridge, "uplink": spec.port, "addressing": addressing, "bond": bond,
            "forward_delay": spec.forward_delay, "address_source": spec.uplink, **extra}


def _apply(spec: HostIpSpec, journal: guard.Journal, state_dir: str, params: Mapping[str, Any], context: Any) -> Result:
    resolv_conf = params.get("resolv_conf") or "/etc/resolv.conf"
    recovered = None if context.check_mode else guard.recover(journal)
    with netops.iproute() as ipr:
        spec = bond_uplink.locate(ipr, spec, journal.read())
        done, differences = transaction.in_desired_state(ipr, spec, resolv_conf)
        before = snapshot.summary(ipr, spec, resolv_conf)
    if done:
        return Result(changed=False, before=before, after=before,
                      values=_values(spec, pending=False, state=before, recovered=_brief(recovered),
                                     dhcp_clients_on_bridge=[c["argv"] for c in clients.find(spec.bridge)],
                                     dhcp_renewers=_renewers([c["argv"] for c in clients.find(spec.bridge)])))
    if context.check_mode:
        with netops.iproute() as ipr:
            snapshot.take(ipr, spec, resolv_conf)
        return Result(changed=True, before=before, after=None,
                      values=_values(spec, pending=False, differences=differences, state=before))
    hold = params.get("test_hold") or None
    started = guard.start(spec, state_dir, resolv_conf, hold=hold)
    timeout = started["apply_budget"] + 15 + sum(float(v) for v in (hold or {}).values())
    data = guard.wait_for(journal, started["token"], ("verified",), timeout)
    phase = data.get("phase")
    if phase == "verified":
        return Result(changed=True, before=before, after=data.get("after"), values=_values(
            spec, pending=True, token=data["token"], phase=phase, result=data.get("result"), state=data.get("after"),
            confirm_deadline=data.get("confirm_deadline"), differences=differences,
            journal=journal.path, recovered=_brief(recovered)))
    if phase in ("rolled_back", "restore_failed"):
        raise _failure(data)
    raise BackendError("bridge", spec.bridge, f"the guard did not report within {timeout:g} s (phase "
                                              f"{phase}); it will roll back by itself unless confirmed; "
                                              f"see {journal.log_path}")


def _confirm(journal: guard.Journal, token: str, context: Any) -> Result:
    data = journal.read()
    if not data or data.get("token") != token:
        raise NotFoundError("token", token, f"is not a transaction recorded in {journal.path}")
    if data.get("phase") == "committed":
        return Result(changed=False, values={"phase": "committed", "token": token})
    if data.get("phase") in ("rolled_back", "restore_failed"):
        raise _failure(data)
    if context.check_mode:
        return Result(changed=True, values={"phase": data.get("phase"), "token": token})
    guard.confirm(journal, token)
    data = guard.wait_for(journal, token, ("committed",), CONFIRM_WAIT)
    if data.get("phase") == "committed":
        return Result(changed=True, after=data.get("after"), values={
            "phase": "committed", "token": token, "state": data.get("after"),
            # the uplink's own DHCP clients, started again for the bridge: they renew its lease now
            "dhcp_clients_started": data.get("dhcp_clients_started") or [],
            "dhcp_renewers": _renewers(data.get("dhcp_clients_started") or [])})
    if data.get("phase") in ("rolled_back", "restore_failed"):
        raise _failure(data)
    raise ConflictError("token", token, f"was written but the guard did not acknowledge it within "
                                        f"{CONFIRM_WAIT:g} s (phase {data.get('phase')})")


def _report(journal: guard.Journal, token: str) -> Result:
    data = journal.read()
    if not data or data.get("token") != token:
        raise NotFoundError("token", token, f"is not a transaction recorded in {journal.path}")
    return Result(changed=False, values={"phase": data.get("phase"), "token": token,
                                         "reason": data.get("reason"), "error": data.get("error"),
                                         "restored": data.get("restored"),
                                         "restored_summary": snapshot.describe(data.get("restored") or {}),
                                         "previous_summary": snapshot.describe(data.get("snapshot") or {})})


def _renewers(argvs: list[list[str]]) -> dict[str, Any]:
    """The host's own client renewing each family on the bridge (its program's name), or None."""
    def first(family: int) -> Any:
        return next((os.path.basename(argv[0]) for argv in argvs if argv and family in clients.families(argv)), None)

    return {"ipv4": first(4), "ipv6": first(6)}


def _brief(data: Any) -> Any:
    if not data:
        return None
    return {"token": data.get("token"), "phase": data.get("phase"), "reason": data.get("reason")}


def _failure(data: Mapping[str, Any]) -> BackendError:
    restored = snapshot.describe(data.get("restored") or {})
    why = data.get("reason") or data.get("error") or "unknown"
    if data.get("phase") == "rolled_back":
        return BackendError("bridge", data["spec"]["bridge"],
                            f"was not kept: {why}. The host rolled back by itself to its previous addressing "
                            f"({restored})")
    detail = data.get("restore_error") or f"the host now has: {restored}"
    return BackendError("bridge", data["spec"]["bridge"],
                        f"was not kept: {why}. The rollback did NOT restore the previous addressing exactly "
                        f"({detail}); previous: {snapshot.describe(data.get('snapshot') or {})}")
