"""VLAN sets as operators write them (``"100-120,200"``) and as the model keeps them.

The model keeps a sorted tuple of tags; the text form is what ``ovs-vsctl`` and
switch CLIs print, so facts and diffs use it too.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from .errors import ValidationError
from .validate import VLAN_MAX, VLAN_MIN, vlan_id

_RANGE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")


def _pieces(field: str, value: Any) -> list[str]:
    if isinstance(value, bool):
        raise ValidationError(field, value, "must be VLAN tags such as '100-120,200' or a list of tags")
    if isinstance(value, int):
        return [str(value)]
    if isinstance(value, str):
        return value.split(",") if value.strip() else []
    if isinstance(value, (list, tuple)):
        pieces: list[str] = []
        for item in value:
            pieces.extend(_pieces(field, item))
        return pieces
    raise ValidationError(field, value, "must be VLAN tags such as '100-120,200' or a list of tags")


def parse_vlans(field: str, value: Any) -> tuple[int, ...]:
    """Parse tags and ranges; reject malformed pieces, out-of-range tags and overlaps."""
    seen: dict[int, str] = {}
    for piece in _pieces(field, value):
        match = _RANGE.match(piece)
        if not match:
            raise ValidationError(field, value, f"has a malformed piece {piece.strip()!r}; write tags and "
                                                "ranges like '100-120,200'")
        low = vlan_id(field, int(match.group(1)))
        high = vlan_id(field, int(match.group(2))) if match.group(2) else low
        if high < low:
            raise ValidationError(field, value, f"has the range {piece.strip()!r} whose end is below its start")
        for tag in range(low, high + 1):
            if tag in seen:
                raise ValidationError(field, value, f"lists VLAN {tag} twice ({seen[tag]!r} and "
                                                    f"{piece.strip()!r} overlap)")
            seen[tag] = piece.strip()
    if not seen:
        raise ValidationError(field, value, f"is empty; give at least one VLAN tag ({VLAN_MIN}-{VLAN_MAX})")
    return tuple(sorted(seen))


def format_vlans(tags: Iterable[int]) -> str:
    """Compress sorted tags into ranges: (1, 2, 3, 7) -> '1-3,7'."""
    out: list[str] = []
    ordered = sorted(set(tags))
    start = prev = None
    for tag in ordered + [None]:  # sentinel flushes the last run
        if start is not None and (tag is None or tag != prev + 1):
            out.append(str(start) if start == prev else f"{start}-{prev}")
            start = None
        if tag is not None and start is None:
            start = tag
        prev = tag
    return ",".join(out)
