"""The pyroute2 that changes on the host need, checked by version before its first use.

Reads never use pyroute2 (``rtnl.py``); changes do. What each user of pyroute2 needs is the oldest
version its integration tests pass with, so a distribution's own package works where it is recent
enough and an older one is refused by name, with the version found and the one needed, before
anything changes (instead of an AttributeError or a netlink refusal half-way through a plan).
"""
from __future__ import annotations

from typing import Any, NamedTuple, Optional


class Need(NamedTuple):
    what: str                      # who needs it, as the error names it
    minimum: tuple[int, ...]
    where: str                     # which distribution package is recent enough


# The kernel datapath (vswitch_bridge, vswitch_port, vswitch_vlan) and vif_mac: Debian 11's
# python3-pyroute2 0.5.14 works (its deletes go through rtnl.dellink, not pyroute2);
# tests/integration/test_pyroute2_versions.py runs the modules with it and with Debian 12's.
KERNEL_DATAPATH = Need("the kernel datapath", (0, 5, 14), "Debian 11's python3-pyroute2 or later")
# The host IP move (vswitch_host_ip, the bridge role) deletes addresses and routes through pyroute2,
# which before 0.7 sends them with NLM_F_EXCL, read by Linux 5.19 and later as a bulk delete and
# refused (EOPNOTSUPP).
HOST_IP_MOVE = Need("the host IP move (vswitch_host_ip, the bridge role)", (0, 7, 2),
                    "Debian 12's python3-pyroute2 or later")
MINIMUM = KERNEL_DATAPATH.minimum


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


def check(found: Optional[str] = None, need: Need = KERNEL_DATAPATH) -> None:
    """Raise MissingFeatureError when pyroute2 is older than ``need`` (ImportError when it is absent)."""
    import pyroute2  # noqa: F401 - absent: ImportError, which modules turn into missing_required_lib

    from .errors import MissingFeatureError

    found = found if found is not None else installed_version()
    if found is not None and _parse(found) < need.minimum:
        needed = ".".join(map(str, need.minimum))
        raise MissingFeatureError("pyroute2", found, f"is too old for {need.what}: it needs pyroute2 >= "
                                  f"{needed} ({need.where}; on older releases install a newer pyroute2 "
                                  f"for the host's python3)")


def iproute(netns: Optional[str] = None, need: Need = KERNEL_DATAPATH) -> Any:
    """pyroute2's IPRoute, once the installed pyroute2 is known to be recent enough for ``need``.

    ``netns``: a namespace other than the caller's (modules run inside theirs and never pass it; tests
    drive the backend in-process). pyroute2 0.9 opens that socket in-process; before 0.9 IPRoute has no
    ``netns`` and NetNS, the same interface served from a helper process inside the namespace, does it.
    """
    check(need=need)
    from pyroute2 import IPRoute

    if netns is None:
        return IPRoute()
    try:
        return IPRoute(netns=netns)
    except TypeError:
        from pyroute2 import NetNS

        return NetNS(netns)
