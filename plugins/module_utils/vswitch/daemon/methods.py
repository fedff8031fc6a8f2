"""What vswitchd answers on its control socket: one table, each method declared once with its parameters.

As Open vSwitch's ``unixctl_command_register`` declares a command with its arity, each
``Command`` here names its parameters, whether each is required, and the validator that
checks its value (the project's own, from ``validate.py``). The table checks a request's
params against that declaration before the handler runs, so a handler only ever sees
checked values, and every malformed call is refused with the member named and nothing
changed.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from .. import validate as v
from ..errors import ValidationError

if TYPE_CHECKING:   # aliases for hints only: subscripting collections.abc types needs Python 3.9
    Check = Callable[[str, Any], Any]   # (field, value) -> the checked value; raises ValidationError


@dataclass(frozen=True)
class Param:
    name: str
    check: Check
    required: bool = False
    doc: str = ""


@dataclass(frozen=True)
class Command:
    name: str
    params: tuple[Param, ...]
    handler: Callable[..., Any]   # called with each param as a keyword (None where left out)
    doc: str = ""

    def __call__(self, params: Mapping[str, Any]) -> Any:
        allowed = tuple(p.name for p in self.params)
        unknown = sorted(str(k) for k in params if k not in allowed)
        if unknown:
            raise ValidationError("params", unknown[0], f"is not a parameter of this method (allowed: "
                                                        f"{', '.join(allowed) or 'none'})")
        values: dict[str, Any] = {}
        for param in self.params:
            value = params.get(param.name)
            field = f"params.{param.name}"
            if value is None:
                if param.required:
                    raise ValidationError(field, None, f"is required{': ' + param.doc if param.doc else ''}")
                values[param.name] = None
            else:
                values[param.name] = param.check(field, value)
        return self.handler(**values)


class CommandTable(dict):  # type: ignore[type-arg] - dict[str, Command]: what handle_request looks up
    def register(self, name: str, handler: Callable[..., Any], *params: Param, doc: str = "") -> None:
        if name in self:
            raise ValueError(f"method {name!r} declared twice")
        self[name] = Command(name, params, handler, doc)


# -- parameter validators ---------------------------------------------------------------------------------
def change_list(field: str, value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise ValidationError(field, value, "must be a list of changes")
    return value


def log_spec(field: str, value: Any) -> tuple[list[str], int]:
    """``LEVEL`` (every module) or ``MODULE:LEVEL``, like ovs-appctl vlog/set: the loggers and the level."""
    if not isinstance(value, str) or not value:
        raise ValidationError(field, value, "must be LEVEL or MODULE:LEVEL, e.g. 'debug' or 'ports:info'")
    module, colon, level = value.rpartition(":")
    if level.lower() not in LOG_LEVELS:
        raise ValidationError(field, value, f"names an unknown level {level!r} (one of "
                                            f"{', '.join(sorted(set(LOG_LEVELS)))})")
    if colon and not module:
        raise ValidationError(field, value, "has an empty module before ':' (give MODULE:LEVEL, ANY:LEVEL or "
                                            "just LEVEL)")
    if module in ("", "ANY", "any"):
        return ["vswitchd"], LOG_LEVELS[level.lower()]
    name = module if module.startswith("vswitchd") else f"vswitchd.{module}"
    if name not in LOG_MODULES:
        raise ValidationError(field, value, f"names an unknown module {module!r} (one of "
                                            f"{', '.join(m[len('vswitchd.'):] or m for m in LOG_MODULES)})")
    return [name], LOG_LEVELS[level.lower()]


# -- log levels at run time (vlog/list, vlog/set) ----------------------------------------------------------
LOG_MODULES = ("vswitchd", "vswitchd.switch", "vswitchd.ports", "vswitchd.server", "vswitchd.main", "vswitchd.bond")
LOG_LEVELS = {"debug": logging.DEBUG, "dbg": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
              "warn": logging.WARNING, "error": logging.ERROR, "err": logging.ERROR, "critical": logging.CRITICAL,
              "emer": logging.CRITICAL, "off": logging.CRITICAL + 10}


def vlog_list() -> dict[str, str]:
    return {name: logging.getLevelName(logging.getLogger(name).getEffectiveLevel()).lower()
            for name in LOG_MODULES}


def vlog_set(spec: Any) -> dict[str, str]:
    return set_log_level(log_spec("spec", spec))


def set_log_level(spec: tuple[list[str], int]) -> dict[str, str]:
    targets, level = spec
    for name in targets:
        logging.getLogger(name).setLevel(level)
    if targets == ["vswitchd"]:
        for name in LOG_MODULES[1:]:
            logging.getLogger(name).setLevel(logging.NOTSET)
    return vlog_list()


# -- the table --------------------------------------------------------------------------------------------
def make_methods(switch: Any, clock: Callable[[], float], info: dict[str, Any]) -> CommandTable:
    bridge = Param("bridge", v.ifname, doc="a bridge of vswitchd; every bridge when left out")
    table = CommandTable()

    def fdb_flush(bridge: Optional[str]) -> dict[str, Any]:
        switch.fdb_flush(bridge)
        return {"flushed": True}

    # Small defs rather than the switch's bound methods: the table reads each handler's parameter names,
    # and these are the protocol's names, not the switch's.
    def get_state() -> dict[str, Any]:
        return switch.state()

    def transact(changes: list[dict[str, Any]]) -> Any:
        return switch.transact(changes)

    def port_stats(bridge: Optional[str]) -> Any:
        return switch.stats(bridge)

    def fdb_summary() -> Any:
        return switch.fdb_summary()

    table.register("ping", lambda: {"pong": True, **info}, doc="liveness, version, pid, paths")
    table.register("get_state", get_state, doc="bridges, ports and links as configured and running")
    table.register("transact", transact,
                   Param("changes", change_list, required=True, doc="a list of changes"),
                   doc="apply a list of changes whole or not at all")
    table.register("fdb_show", lambda bridge: switch.fdb(bridge, clock()), bridge, doc="learned MACs")
    table.register("fdb_flush", fdb_flush, bridge, doc="forget learned MACs")
    table.register("port_stats", port_stats, bridge, doc="per-port counters")
    table.register("fdb_summary", fdb_summary, doc="learned entries and limits per bridge")

    def bond_show(bond: Optional[str]) -> Any:
        return switch.bonds(bond, "show")

    def lacp_show(bond: Optional[str]) -> Any:
        return switch.bonds(bond, "lacp")

    bond = Param("bond", v.ifname, doc="a bond of vswitchd; every bond when left out")
    table.register("bond_show", bond_show, bond, doc="bonds: mode, members, active member, counters")
    table.register("lacp_show", lacp_show, bond, doc="LACP actor and partner of each bond member")
    table.register("vlog_list", vlog_list, doc="log level of each module")
    table.register("vlog_set", set_log_level, Param("spec", log_spec, required=True, doc="LEVEL or MODULE:LEVEL"),
                   doc="set log levels")
    return table
