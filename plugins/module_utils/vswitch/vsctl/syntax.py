"""The ``ovs-vsctl`` command line, and the OVSDB text form of values (parsing and printing)."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Optional

from ..clirun import CliError


class VsctlError(CliError):
    """An error ovs-vsctl would print as ``ovs-vsctl: MESSAGE`` (exit status ``code``)."""


# Global options: name -> whether it takes a value. Options that only concern a real OVSDB
# (--db, --no-wait, --retry...) are accepted and have nothing to do here: vswitchd applies a
# transaction before it answers, so there is nothing to wait for.
GLOBAL_OPTIONS = {
    "timeout": True, "t": True, "db": True, "format": True, "f": True, "data": True, "d": True,
    "no-wait": False, "bare": False, "no-headings": False, "oneline": False, "dry-run": False,
    "retry": False, "no-syslog": False, "verbose": False, "v": False, "pretty": False,
}
COMMAND_OPTIONS = ("may-exist", "if-exists", "columns", "all", "with-iface", "fake-iface", "real", "fake")


@dataclass
class Command:
    name: str
    args: list[str]
    options: dict[str, Optional[str]] = field(default_factory=dict)

    def has(self, option: str) -> bool:
        return option in self.options


@dataclass
class CommandLine:
    options: dict[str, Optional[str]]
    commands: list[Command]

    @property
    def timeout(self) -> Optional[float]:
        value = self.options.get("timeout") or self.options.get("t")
        if value is None:
            return None
        try:
            seconds = float(value)
        except ValueError:
            raise VsctlError(f"value {value} on -t or --timeout is invalid") from None
        return seconds if seconds > 0 else None


def _option(token: str) -> tuple[str, Optional[str]]:
    name, sep, value = token.lstrip("-").partition("=")
    return name, (value if sep else None)


def parse_command_line(argv: list[str]) -> CommandLine:
    """Split ARGS into global options and the ``--``-separated commands, each with its own options."""
    options: dict[str, Optional[str]] = {}
    i = 0
    while i < len(argv) and argv[i].startswith("-") and argv[i] != "--":
        name, value = _option(argv[i])
        if name not in GLOBAL_OPTIONS:
            if name in COMMAND_OPTIONS:
                break   # the first command's own option, given without a leading '--'
            raise VsctlError(f"unrecognized option '{argv[i]}'")
        if GLOBAL_OPTIONS[name] and value is None:
            if i + 1 >= len(argv):
                raise VsctlError(f"option '{argv[i]}' requires an argument")
            i += 1
            value = argv[i]
        options[name] = value
        i += 1
    segments: list[list[str]] = [[]]
    for token in argv[i:]:
        if token == "--":
            segments.append([])
        else:
            segments[-1].append(token)
    commands = [_command(segment) for segment in segments if segment]
    if not commands:
        raise VsctlError("missing command name (use --help for help)")
    return CommandLine(options, commands)


def _command(tokens: list[str]) -> Command:
    opts: dict[str, Optional[str]] = {}
    while tokens and tokens[0].startswith("--"):
        name, value = _option(tokens[0])
        opts[name] = value
        tokens = tokens[1:]
    if not tokens:
        raise VsctlError("missing command name (use --help for help)")
    return Command(tokens[0], tokens[1:], opts)


# -- values -----------------------------------------------------------------------------------------------
_BARE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


def quote(text: str) -> str:
    """A string as OVSDB prints it: bare when it reads as an identifier, else JSON-quoted."""
    if _BARE.match(text) and text not in ("true", "false"):
        return text
    return json.dumps(text, ensure_ascii=False)


def unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        try:
            return json.loads(text)
        except ValueError:
            raise VsctlError(f"{text}: quoted string is not valid") from None
    return text


def split_items(text: str) -> list[str]:
    """The items of ``[a, b]``, ``{k=v, k2=v2}`` or a bare ``a,b`` (commas inside quotes kept)."""
    text = text.strip()
    if text[:1] in "[{" and text[-1:] in "]}":
        text = text[1:-1]
    items, current, quoted = [], "", False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == "," and not quoted:
            items.append(current.strip())
            current = ""
        else:
            current += char
    if current.strip():
        items.append(current.strip())
    return items


def format_value(value: Any, kind: str, bare: bool = False) -> str:
    """A column value as ``get`` and ``list`` print it (``bare``: as ``--bare`` does)."""
    if kind == "map":
        pairs = sorted((value or {}).items())
        if bare:
            return " ".join(f"{k}={v}" for k, v in pairs)
        return "{" + ", ".join(f"{quote(k)}={quote(v)}" for k, v in pairs) + "}"
    if kind == "set":
        items = [str(x) for x in sorted(value or ())]
        return " ".join(items) if bare else "[" + ", ".join(items) + "]"
    if value is None:
        return "" if bare else "[]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return str(value) if bare else quote(str(value))


def json_value(value: Any, kind: str) -> Any:
    """A column value in ``--format=json``: OVSDB's JSON notation."""
    if kind == "map":
        return ["map", [[k, v] for k, v in sorted((value or {}).items())]]
    if kind == "set":
        return ["set", sorted(value or ())]
    if value is None:
        return ["set", []]
    return value
