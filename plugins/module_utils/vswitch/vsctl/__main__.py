"""``python3 -m vswitch.vsctl ARGS``: ovs-vsctl's command language, answered by vswitchd.

Exit status as ovs-vsctl's: 0 on success, 1 on an error (``ovs-vsctl: MESSAGE`` on stderr,
nothing changed), 2 for ``br-exists`` on a bridge that does not exist. The control socket is
``$VSWITCHD_SOCKET`` (default /run/openvif/vswitchd.sock), as for vswitchctl.
"""
from __future__ import annotations

import sys
from typing import Any, Optional

from ..clirun import run_reporting
from ..hotplug import load_profiles
from ..rpc import Client
from ..userspace import UserspaceBackend
from .commands import COMMANDS, Context, check
from .profiled import apply_profiles
from .syntax import CommandLine, VsctlError, parse_command_line

PROG = "ovs-vsctl"
USAGE = f"""usage: {PROG} [OPTIONS] COMMAND [ARG...] [-- [OPTIONS] COMMAND [ARG...]]...
vswitchd's answer to Open vSwitch's ovs-vsctl: the commands on one line apply as one transaction.

Commands: {", ".join(sorted(COMMANDS))}
Tables: Bridge (name), Port (name, tag, trunks, vlan_mode), Interface (name, type, external_ids)
Options: --timeout=SECS, --if-exists, --may-exist, --format=list|table|json, --columns=COL,...,
         --bare, --no-headings, --dry-run; --db, --no-wait and --retry are accepted and not needed.
"""


def output_options(line: CommandLine) -> dict[str, Any]:
    fmt = line.options.get("format") or line.options.get("f") or "list"
    if fmt not in ("list", "table", "json"):
        raise VsctlError(f"{fmt}: unknown output format")
    data = line.options.get("data") or line.options.get("d")
    return {"format": fmt, "bare": "bare" in line.options or data == "bare",
            "no_headings": "no-headings" in line.options}


def run(argv: list[str], client: Optional[Client] = None) -> str:
    """Run one command line; what to print on stdout."""
    line = parse_command_line(argv)
    specs = [check(cmd) for cmd in line.commands]   # every command checked before anything runs
    opts = output_options(line)
    with client or Client(timeout=line.timeout or 60.0) as conn:
        backend = UserspaceBackend(conn, include_links=True)
        ctx = Context(backend.read(), backend.features)
        outputs = []
        for index, cmd in enumerate(line.commands):
            out = specs[index].run(ctx, cmd, opts)
            if out is not None:   # None: nothing to print; "" is an empty line, as ovs-vsctl prints one
                outputs.append(out)
        if ctx.changes:
            apply_profiles(ctx, load_profiles)
        if ctx.changes and "dry-run" not in line.options:
            backend.apply(ctx.changes)
    return "".join(out + "\n" for out in outputs)


def main(argv: Optional[list[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        sys.stdout.write(USAGE)
        return 0 if args else 1
    return run_reporting(PROG, lambda: run(args), daemon_prefix="transaction error: ",
                         os_error=lambda err: f"{Client().path}: database connection failed ({err})")


if __name__ == "__main__":
    # SystemExit rather than sys.exit: this is module_utils, where sanity forbids sys.exit.
    raise SystemExit(main())
