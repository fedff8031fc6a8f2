"""The backend interface and ``Host``, which puts every datapath of a host behind one face.

Modules read one ``HostState`` that holds bridges of both datapaths, plan
against it, and hand the plan to ``Host.apply``, which routes each change to
its datapath's backend and undoes earlier steps if a later one fails.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Optional, Protocol

from .errors import BackendError, VswitchError
from .model import Change, FdbEntry, Features, HostState
from .plan import invert

if TYPE_CHECKING:
    from .declared import DeclarationStore


class Backend(Protocol):
    datapath: str
    features: Features

    def read(self) -> HostState:
        """Bridges and ports of this datapath (the kernel backend also fills ``links``)."""

    def apply(self, changes: Sequence[Change]) -> None:
        """Apply all of ``changes`` or, on failure, none of them (raise ``BackendError``)."""

    def fdb(self, bridge: Optional[str] = None) -> list[FdbEntry]:
        """Learned and static forwarding entries, of one bridge or all."""


class Host:
    def __init__(self, backends: Sequence[Backend], declarations: Optional[DeclarationStore] = None) -> None:
        self.backends = {backend.datapath: backend for backend in backends}
        # Where module runs record what they declared (None: not recorded, as in unit tests).
        self.declarations = declarations
        self.warnings: list[str] = []   # for the operator, once per run

    @property
    def features(self) -> dict[str, Features]:
        return {name: backend.features for name, backend in self.backends.items()}

    def read(self) -> HostState:
        bridges, ports, links = {}, {}, {}
        for backend in self.backends.values():
            state = backend.read()
            bridges.update(state.bridges)
            ports.update(state.ports)
            links.update(state.links)
        return HostState(bridges=bridges, ports=ports, links=links, datapaths=tuple(self.backends))

    def fdb(self, bridge: Optional[str] = None) -> list[FdbEntry]:
        entries: list[FdbEntry] = []
        for backend in self.backends.values():
            entries.extend(backend.fdb(bridge))
        return entries

    def apply(self, changes: Sequence[Change], before: HostState) -> None:
        """Apply runs of changes datapath by datapath; if one fails, undo the runs before it."""
        done: list[Change] = []
        for run in _runs_by_datapath(changes):
            backend = self.backends[run[0].datapath]
            try:
                backend.apply(run)
            except VswitchError:
                self._undo(done, before)
                raise
            done.extend(run)

    def _undo(self, done: Sequence[Change], before: HostState) -> None:
        for run in _runs_by_datapath(invert(done, before)):
            try:
                self.backends[run[0].datapath].apply(run)
            except VswitchError as err:
                raise BackendError("rollback", [c.describe() for c in run],
                                   f"failed after an earlier error ({err.message}); the host may be "
                                   "partly changed") from err


def _runs_by_datapath(changes: Sequence[Change]) -> list[list[Change]]:
    runs: list[list[Change]] = []
    for change in changes:
        if runs and runs[-1][0].datapath == change.datapath:
            runs[-1].append(change)
        else:
            runs.append([change])
    return runs


def converge(host: Host, changes: Sequence[Change], before: HostState, check_mode: bool) -> None:
    if changes and not check_mode:
        host.apply(changes, before)
