"""Open the datapaths this host has: the kernel always, vswitchd when its socket answers."""
from __future__ import annotations

from typing import Optional

from .declared import DeclarationStore
from .host import Backend, Host


def open_host(netns: Optional[str] = None, record: bool = True, light: bool = False) -> Host:
    """The host's datapaths; ``record``: module runs keep what they declare in the declaration store;
    ``light``: pyroute2 only when a change needs it (the hotplug scripts, see KernelBackend)."""
    from .kernel import KernelBackend

    backends: list[Backend] = [KernelBackend(netns=netns, light=light)]
    userspace = _open_userspace()
    if userspace is not None:
        backends.append(userspace)
    return Host(backends, declarations=DeclarationStore() if record else None)


def _open_userspace() -> Optional[Backend]:
    try:
        from .userspace import open_userspace
    except ImportError:  # the userspace backend is optional: kernel-only hosts work without it
        return None
    return open_userspace()
