"""Validators for the primitive values every model field is built from.

Each returns the normalised value or raises ``ValidationError`` naming the
field, the value and why, so callers never format messages themselves.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Optional

from .errors import ValidationError

IFNAMSIZ = 16  # the kernel's limit includes the trailing NUL: 15 visible characters
MTU_MIN, MTU_MAX = 68, 65535
VLAN_MIN, VLAN_MAX = 1, 4094
AGEING_MAX = 1_000_000  # seconds; the kernel stores centiseconds in 32 bits
# STP timers per 802.1D: forward delay 4..30 s; Linux accepts 0..30 s when STP is off.
FORWARD_DELAY_MIN, FORWARD_DELAY_MAX = 0.0, 30.0
STP_FORWARD_DELAY_MIN = 2.0

_IFNAME_BAD = re.compile(r"[\s/:]")
_MAC = re.compile(r"^[0-9a-f]{2}([:-]?)[0-9a-f]{2}(\1[0-9a-f]{2}){4}$")


def ifname(field: str, value: Any) -> str:
    """A Linux interface name: 1..15 characters, no whitespace, '/' or ':', not '.' or '..'."""
    if not isinstance(value, str) or not value:
        raise ValidationError(field, value, "must be a non-empty interface name")
    if len(value) >= IFNAMSIZ:
        raise ValidationError(field, value, f"is {len(value)} characters long; Linux interface names "
                                            f"have at most {IFNAMSIZ - 1}")
    bad = _IFNAME_BAD.search(value)
    if bad:
        raise ValidationError(field, value, f"contains {bad.group()!r}, which Linux does not allow in "
                                            "interface names (no whitespace, '/' or ':')")
    if value in (".", ".."):
        raise ValidationError(field, value, "is not a valid interface name")
    if not value.isprintable() or not value.isascii():
        raise ValidationError(field, value, "must contain printable ASCII characters only")
    return value


def mac(field: str, value: Any, *, unicast: bool = True) -> str:
    """A 48-bit MAC in any common notation, normalised to lower-case colon form."""
    if not isinstance(value, str):
        raise ValidationError(field, value, "must be a MAC address such as '00:16:3e:aa:00:11'")
    text = value.strip().lower()
    if not _MAC.match(text):
        raise ValidationError(field, value, "is not a MAC address (six hex octets such as "
                                            "'00:16:3e:aa:00:11')")
    digits = re.sub(r"[:-]", "", text)
    normal = ":".join(digits[i:i + 2] for i in range(0, 12, 2))
    if unicast and int(digits[:2], 16) & 1:
        raise ValidationError(field, normal, "is a multicast address (lowest bit of the first octet "
                                             "is set); a NIC needs a unicast MAC")
    if unicast and digits == "0" * 12:
        raise ValidationError(field, normal, "is the all-zero address, which no NIC may use")
    return normal


def known_keys(field: str, entry: Mapping[Any, Any], accepted: Iterable[str], what: str) -> None:
    """A list entry carries only keys the module knows: a typo, or a key that belongs to the task
    (``state``), is an error naming it, never silently ignored."""
    accepted = tuple(accepted)
    unknown = sorted((key for key in entry if key not in accepted), key=str)
    if unknown:
        hint = "; 'state' is set once for the whole task" if unknown[0] == "state" else ""
        raise ValidationError(f"{field}.{unknown[0]}" if field else str(unknown[0]), entry[unknown[0]],
                              f"is not {what} option (accepted: {', '.join(accepted)}){hint}")


EXTERNAL_IDS_MAX = 64        # keys per port: what Xen, libvirt and XAPI record is about ten
EXTERNAL_ID_LEN_MAX = 255


def string_map(field: str, value: Any) -> dict[str, str]:
    """A map of short printable strings (a port's external IDs), keys sorted.

    Numbers are taken as their text (YAML reads ``xs-vif-id: 0`` as an integer); anything
    else that is not a string is refused.
    """
    if not isinstance(value, Mapping):
        raise ValidationError(field, value, "must be a mapping of strings (key: value)")
    if len(value) > EXTERNAL_IDS_MAX:
        raise ValidationError(field, f"{len(value)} keys", f"has too many keys; at most {EXTERNAL_IDS_MAX}")
    out = {}
    for key, item in value.items():
        if isinstance(item, int) and not isinstance(item, bool):
            item = str(item)
        for what, text in (("key", key), ("value", item)):
            if not isinstance(text, str) or (what == "key" and not text):
                raise ValidationError(f"{field}.{key}", item, f"has a {what} that is not a non-empty string"
                                      if what == "key" else "must be a string")
            if len(text) > EXTERNAL_ID_LEN_MAX or not text.isprintable():
                raise ValidationError(f"{field}.{key}", item, f"has a {what} that is not printable text of at "
                                                              f"most {EXTERNAL_ID_LEN_MAX} characters")
        out[key] = item
    return dict(sorted(out.items()))


def boolean(field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(field, value, "must be true or false")
    return value


def integer(field: str, value: Any, low: int, high: int, unit: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValidationError(field, value, f"must be an integer between {low} and {high}{unit}")
    try:
        number = int(value)
    except ValueError:
        raise ValidationError(field, value, f"must be an integer between {low} and {high}{unit}") from None
    if not low <= number <= high:
        raise ValidationError(field, number, f"is out of range; must be between {low} and {high}{unit}")
    return number


def seconds(field: str, value: Any, low: float, high: float) -> float:
    """A duration in seconds, kept to the kernel's centisecond resolution."""
    if isinstance(value, bool):
        raise ValidationError(field, value, "must be a number of seconds")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValidationError(field, value, "must be a number of seconds") from None
    if not low <= number <= high:
        raise ValidationError(field, value, f"is out of range; must be between {low:g} and {high:g} seconds")
    return round(number * 100) / 100


def mtu(field: str, value: Any) -> int:
    return integer(field, value, MTU_MIN, MTU_MAX)


def vlan_id(field: str, value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value in (0, 4095):
        why = "0 means 'no VLAN' in 802.1Q" if value == 0 else "4095 is reserved by 802.1Q"
        raise ValidationError(field, value, f"is not a usable VLAN tag ({why}); tags are 1-4094")
    return integer(field, value, VLAN_MIN, VLAN_MAX)


def choice(field: str, value: Any, choices: Iterable[str]) -> str:
    options = tuple(choices)
    if value not in options:
        raise ValidationError(field, value, f"must be one of {', '.join(options)}")
    return str(value)


def optional(func, field: str, value: Any, *args: Any) -> Optional[Any]:
    """Apply ``func`` unless ``value`` is None (the field is then left unmanaged)."""
    return None if value is None else func(field, value, *args)
