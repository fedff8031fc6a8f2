"""Typed errors. Every message names the field, the value and why.

Modules turn these into ``fail_json`` in exactly one place (``_ansible.py``);
the daemon turns them into JSON-RPC error replies. Nothing else formats errors.
"""
from __future__ import annotations

from typing import Any


class VswitchError(Exception):
    """Base class: ``field``/``value`` say what was asked, ``reason`` why it cannot be."""

    kind = "error"

    def __init__(self, field: str, value: Any, reason: str) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        super().__init__(self.message)

    @property
    def message(self) -> str:
        return f"{self.field}: {self.value!r} {self.reason}"

    def at(self, prefix: str) -> VswitchError:
        """Return the same error with its field placed under ``prefix`` (e.g. ``ports[3]``)."""
        field = f"{prefix}.{self.field}" if self.field else prefix
        return type(self)(field, self.value, self.reason)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "field": self.field, "value": self.value, "reason": self.reason,
                "message": self.message}


class ValidationError(VswitchError):
    """The request itself is malformed (bad name, out-of-range number, bad MAC)."""

    kind = "invalid"


class ConflictError(VswitchError):
    """The request is well formed but contradicts the host's state or itself."""

    kind = "conflict"


class NotFoundError(VswitchError):
    """The request refers to something the host does not have."""

    kind = "not_found"


class MissingFeatureError(VswitchError):
    """The chosen datapath cannot do what was asked on this host."""

    kind = "missing_feature"


class BackendError(VswitchError):
    """The datapath refused a change; the backend has already rolled back what it did."""

    kind = "backend"


ERROR_KINDS: dict[str, type[VswitchError]] = {
    cls.kind: cls
    for cls in (VswitchError, ValidationError, ConflictError, NotFoundError, MissingFeatureError, BackendError)
}


def error_from_dict(data: dict[str, Any]) -> VswitchError:
    """Rebuild an error sent over the daemon's control socket."""
    cls = ERROR_KINDS.get(str(data.get("kind")), VswitchError)
    return cls(str(data.get("field", "")), data.get("value"), str(data.get("reason", "failed")))
