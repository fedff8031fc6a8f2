"""The pyroute2 that changes on the kernel datapath need, checked by version before its first use.

Reads never use pyroute2 (``rtnl.py``); changes do. The oldest version the integration tests pass
with is what a managed host needs, so a distribution's own package works where it is recent enough
and an older one is refused by name, with the version found and the one needed, before anything
changes (instead of an AttributeError half-way through a plan).
"""
from __future__ import annotations

from typing import Any, Optional

MINIMUM = (0, 7, 2)   # Debian 12's python3-pyroute2; tests/integration/test_pyroute2_versions.py runs it


def _parse(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit()) if piece[:1].isdigit() else ""
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def installed_version() -> Optional[str]:
    """pyroute2's version as its package metadata says, None when it has none (a vendored copy)."""
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:   # pragma: no cover - Python 3.8 has importlib.metadata
        return None
    try:
        return version("pyroute2")
    except PackageNotFoundError:
        return None


def check(found: Optional[str] = None) -> None:
    """Raise MissingFeatureError when pyroute2 is older than MINIMUM (ImportError when it is absent)."""
    import pyroute2  # noqa: F401 - absent: ImportError, which modules turn into missing_required_lib

    from .errors import MissingFeatureError

    found = found if found is not None else installed_version()
    if found is not None and _parse(found) < MINIMUM:
        needed = ".".join(map(str, MINIMUM))
        raise MissingFeatureError("pyroute2", found, f"is too old for the kernel datapath: it needs pyroute2 >= "
                                  f"{needed} (Debian 12's python3-pyroute2 or later; on older releases install "
                                  f"a newer pyroute2 for the host's python3)")


def iproute(netns: Optional[str] = None) -> Any:
    """pyroute2's IPRoute, once the installed pyroute2 is known to be recent enough.

    ``netns``: a namespace other than the caller's (modules run inside theirs and never pass it; tests
    drive the backend in-process). pyroute2 0.9 opens that socket in-process; before 0.9 IPRoute has no
    ``netns`` and NetNS, the same interface served from a helper process inside the namespace, does it.
    """
    check()
    from pyroute2 import IPRoute

    if netns is None:
        return IPRoute()
    try:
        return IPRoute(netns=netns)
    except TypeError:
        from pyroute2 import NetNS

        return NetNS(netns)
