"""What a module run returns: ``changed``, the diff, and module-specific values."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Result:
    changed: bool = False
    before: Any = None
    after: Any = None
    values: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)   # shown to the operator (module.warn)
