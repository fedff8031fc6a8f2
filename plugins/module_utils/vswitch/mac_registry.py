"""Where the vif_mac registry lives, and how concurrent controllers share it safely.

The planner (``mac.plan_fleet``) decides every assignment; a backend only makes the
read-plan-write of one run atomic with respect to every other run:

- ``FileRegistry``: a YAML file on the controller (or a shared filesystem). A run holds an
  exclusive ``flock`` on ``<registry>.lock`` from before it reads until after it has renamed the
  new file into place, so two runs never plan from the same registry. A writer that ignores the
  lock (a hand edit, ``git pull``, an older collection) is caught by compare-and-swap: the file is
  re-read just before the rename and, if it changed since it was planned from, planned again.
  The file is replaced atomically (temporary file, fsync, rename, fsync of the directory), so a
  run killed at any moment leaves either the old registry or the new one.
- ``PostgresRegistry``: a table with the MAC as a unique key, for controllers that share no
  filesystem. A run reads the rows, plans, and writes only its differences in one transaction,
  each guarded by the value it read; a unique violation or a row changed since it was read rolls
  the transaction back and the run plans again from what is there now.

Controller-side only (fcntl, sockets, psycopg); never bundled into a module that runs on a host.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import random
import re
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any, Optional

from . import atomic
from . import mac as macs
from .errors import BackendError, ConflictError, ValidationError

# A planner turns the registry as loaded ({version, prefix, assignments} or None) into
# plan_fleet's result; backends call it again whenever what it planned from went stale.
Planner = "Callable[[Optional[Mapping[str, Any]]], dict]"   # a string: Python 3.8 cannot subscript collections.abc

DEFAULT_LOCK_TIMEOUT = 60.0
DEFAULT_TABLE = "vif_mac_assignments"
# Re-plans before giving up: each one means another writer changed the registry in between,
# which under the lock only a writer ignoring it can do.
CAS_ATTEMPTS = 5
PG_ATTEMPTS = 20
# The options of the vif_mac_registry action, for its action plugin and its documentation module alike.
ARGUMENT_SPEC: dict[str, dict[str, Any]] = {
    "operation": {"type": "str", "choices": ["plan", "export", "import"], "default": "plan"},
    "backend": {"type": "str", "choices": ["file", "postgresql"], "default": "file"},
    "path": {"type": "path"},
    "dsn": {"type": "str", "default": "", "no_log": True},  # may carry a password
    "table": {"type": "str", "default": DEFAULT_TABLE},
    "lock_timeout": {"type": "float", "default": DEFAULT_LOCK_TIMEOUT},
    "prefix": {"type": "str", "default": macs.XEN_OUI},
    "declared": {"type": "dict", "default": {}},
    "seen": {"type": "dict", "default": {}},
    "prune": {"type": "bool", "default": False},
    "adopt": {"type": "bool", "default": True},
    "src": {"type": "path"},
    "dest": {"type": "path"},
}
_TABLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _load_yaml(text: str) -> Any:
    import yaml  # controller side: PyYAML comes with ansible-core

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: many times faster on 100,000 lines
    try:
        return yaml.load(text, Loader=loader)
    except yaml.YAMLError as err:
        raise ValidationError("registry", text[:60] + ("..." if len(text) > 60 else ""),
                              f"is not valid YAML: {err}") from None


def registry_data(assignments: Mapping[str, str], rng: macs.MacRange) -> dict[str, Any]:
    """The loaded form of a registry holding ``assignments`` (what plan_fleet reads)."""
    return {"version": macs.REGISTRY_VERSION, "prefix": rng.prefix, "assignments": dict(assignments)}


def merge(current: Mapping[str, str], incoming: Mapping[str, str], rng: macs.MacRange,
          field: str = "import") -> dict[str, str]:
    """``current`` plus ``incoming``; a VIF with two MACs or a MAC with two VIFs is an error naming both."""
    out = dict(current)
    for key, mac in sorted(incoming.items()):
        if key in out and out[key] != mac:
            raise ConflictError(f"{field}[{key!r}]", mac, f"differs from the target's {out[key]!r} for the "
                                                          "same VIF; resolve it by hand before importing")
        out[key] = mac
    macs.parse_registry(registry_data(out, rng), rng, field)  # raises naming both holders of one MAC
    return out


# ---------------------------------------------------------------- the file backend

class FileRegistry:
    """The registry file, locked for each read-plan-write and replaced atomically."""

    def __init__(self, path: str, lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> None:
        if not path:
            raise ValidationError("registry", path, "must be the path of the registry file")
        self.path = os.path.abspath(path)
        # The lock is a file of its own: the registry's inode changes at every rename, so a lock
        # on it would not exclude a run that opened the new one. The lock file also holds the
        # holder's pid, host and start time for the message of a run that waited too long.
        self.lock_path = self.path + ".lock"
        self.lock_timeout = lock_timeout
        self.waited = 0.0
        self.last_read: Optional[str] = None  # the text the last plan was made from (for a diff)

    # -- reading

    def read_text(self) -> Optional[str]:
        try:
            with open(self.path, encoding="utf-8") as handle:
                return handle.read()
        except FileNotFoundError:
            return None

    def load(self, text: Optional[str]) -> Any:
        return None if text is None else _load_yaml(text)

    # -- locking

    def _holder(self) -> str:
        try:
            with open(self.lock_path, encoding="utf-8") as handle:
                info = json.loads(handle.read() or "{}")
            return f"pid {info['pid']} on {info['host']} since {info['since']}"
        except (OSError, ValueError, KeyError, TypeError):
            return "a process that has not recorded itself yet"

    def _acquire(self) -> int:
        directory = os.path.dirname(self.path)
        if not os.path.isdir(directory):
            raise ValidationError("registry", self.path, f"cannot be written: directory {directory!r} does not exist")
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        started = time.monotonic()
        delay = 0.005
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as err:
                if err.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
            waited = time.monotonic() - started
            if waited >= self.lock_timeout:
                holder = self._holder()
                os.close(fd)
                raise ConflictError("registry", self.path,
                                    f"is locked by {holder} (lock file {self.lock_path}); waited "
                                    f"{waited:.0f} s (vif_mac_lock_timeout). Another run is assigning MACs: "
                                    "run again when it has finished. A lock is released when its holder "
                                    "exits, even by kill -9, so a lock held this long is held by a live process")
            time.sleep(delay)
            delay = min(delay * 2, 0.2)
        self.waited = time.monotonic() - started
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode() + b"\n", 0)
        self._clear_debris()
        return fd

    # -- writing

    def _tmp_prefix(self) -> str:
        directory, name = os.path.split(self.path)
        return os.path.join(directory, f".{name}.tmp-")

    def _clear_debris(self) -> None:
        """Remove temporary files of runs killed mid-write: under the lock, no live run has one."""
        directory, prefix = os.path.split(self._tmp_prefix())
        for entry in os.listdir(directory):
            if entry.startswith(prefix):
                try:
                    os.unlink(os.path.join(directory, entry))
                except FileNotFoundError:
                    pass

    def _write_atomically(self, text: str) -> None:
        try:
            mode = os.stat(self.path).st_mode & 0o7777   # the registry keeps the mode it was given
        except FileNotFoundError:
            mode = 0o644
        atomic.write(self.path, text, mode=mode, tmp=f"{self._tmp_prefix()}{os.getpid()}")

    def update(self, planner: Planner, rng: macs.MacRange, write: bool = True) -> dict[str, Any]:
        """Plan under the lock from the registry as it is, and write the result if it changed.

        ``rng`` is unused here (the file records its own prefix); it keeps one signature for both backends.
        """
        fd = self._acquire()
        try:
            for attempt in range(1, CAS_ATTEMPTS + 1):
                text = self.last_read = self.read_text()
                plan = planner(self.load(text))
                plan["replans"] = attempt - 1
                plan["registry_changed"] = plan["registry_changed"] or text is None  # a new file is a change
                if not write or not plan["registry_changed"]:
                    return plan
                if self.read_text() != text:  # changed by a writer that ignores the lock: plan again
                    continue
                self._write_atomically(plan["registry_text"])
                return plan
            raise ConflictError("registry", self.path,
                                f"changed under this run {CAS_ATTEMPTS} times while it held the lock; "
                                "something writes it without taking the lock (an editor, a checkout)")
        finally:
            os.close(fd)  # releases the flock

    def assignments(self, rng: macs.MacRange) -> dict[str, str]:
        return macs.parse_registry(self.load(self.read_text()), rng)

    def import_assignments(self, incoming: Mapping[str, str], rng: macs.MacRange,
                           write: bool = True) -> tuple[int, bool]:
        """Merge ``incoming`` in; (entries added, changed)."""
        fd = self._acquire()
        try:
            text = self.read_text()
            current = macs.parse_registry(self.load(text), rng)
            merged = merge(current, incoming, rng)
            added = len(merged) - len(current)
            if write and (added or text is None):
                self._write_atomically(macs.render_registry(merged, rng))
            return added, bool(added or text is None)
        finally:
            os.close(fd)


# ---------------------------------------------------------------- the PostgreSQL backend

class _Stale(Exception):
    """A row this run planned from was changed by another run before this one wrote."""


def redacted(conninfo: str) -> str:
    """``conninfo`` for messages: a password in it (key=value or URI form) never reaches a log."""
    if not conninfo:
        return "the PG* environment"
    text = re.sub(r"(password\s*=\s*)('[^']*'|\S+)", r"\1***", conninfo)
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", text)


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        raise BackendError("vif_mac_registry_backend", "postgresql",
                           "needs the psycopg package on the controller (pip install 'psycopg[binary]'; "
                           "requirements/test.txt pins it)") from None
    return psycopg


class PostgresRegistry:
    """One row per assignment, ``UNIQUE (mac)``: the database guarantees, the planner decides."""

    def __init__(self, conninfo: str = "", table: str = DEFAULT_TABLE, connect_timeout: int = 10) -> None:
        if not isinstance(table, str) or not _TABLE_NAME.match(table):
            raise ValidationError("vif_mac_registry_table", table,
                                  "must be a lower-case SQL identifier (letters, digits, '_'; at most 63)")
        self.conninfo = conninfo or ""  # empty: libpq takes PGHOST, PGDATABASE, PGUSER... from the environment
        self.table = table
        self.connect_timeout = connect_timeout
        self.replans = 0

    def _connect(self) -> Any:
        psycopg = _psycopg()
        try:
            return psycopg.connect(self.conninfo, connect_timeout=self.connect_timeout, autocommit=False)
        except psycopg.Error as err:
            raise BackendError("vif_mac_registry_dsn", redacted(self.conninfo),
                               f"does not reach a PostgreSQL server: {str(err).strip()}") from None

    def _ensure_schema(self, conn: Any) -> None:
        sql = _psycopg().sql
        with conn.cursor() as cur:
            # Concurrent CREATE TABLE IF NOT EXISTS can still collide in the catalog: serialise it.
            cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"openvif.vswitch:{self.table}",))
            cur.execute(sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} ("
                " prefix text NOT NULL,"
                " key text NOT NULL,"
                " mac text NOT NULL UNIQUE CHECK (mac ~ '^[0-9a-f]{{2}}(:[0-9a-f]{{2}}){{5}}$'),"
                " assigned_at timestamptz NOT NULL DEFAULT now(),"
                " PRIMARY KEY (prefix, key))").format(sql.Identifier(self.table)))
        conn.commit()

    def _rows(self, cur: Any, rng: macs.MacRange) -> dict[str, str]:
        sql = _psycopg().sql
        cur.execute(sql.SQL("SELECT key, mac FROM {} WHERE prefix = %s").format(sql.Identifier(self.table)),
                    (rng.prefix,))
        return dict(cur.fetchall())

    def _write(self, cur: Any, rng: macs.MacRange, before: Mapping[str, str], after: Mapping[str, str]) -> None:
        sql = _psycopg().sql
        table = sql.Identifier(self.table)
        gone = [(rng.prefix, k, before[k]) for k in before if k not in after]
        moved = [(after[k], rng.prefix, k, before[k]) for k in before if k in after and after[k] != before[k]]
        new = [(rng.prefix, k, after[k]) for k in after if k not in before]
        # Each change is guarded by the value this run read: a row another run changed or removed
        # in between matches nothing, and the run plans again instead of overwriting it.
        for query, rows in ((sql.SQL("DELETE FROM {} WHERE prefix = %s AND key = %s AND mac = %s"), gone),
                            (sql.SQL("UPDATE {} SET mac = %s, assigned_at = now() "
                                     "WHERE prefix = %s AND key = %s AND mac = %s"), moved)):
            for row in rows:
                cur.execute(query.format(table), row)
                if cur.rowcount != 1:
                    raise _Stale()
        if new:
            cur.executemany(sql.SQL("INSERT INTO {} (prefix, key, mac) VALUES (%s, %s, %s)").format(table), new)

    def _transact(self, body: Callable[[Any], Any]) -> Any:
        psycopg = _psycopg()
        retry = (psycopg.errors.UniqueViolation, psycopg.errors.SerializationFailure,
                 psycopg.errors.DeadlockDetected, _Stale)
        conn = self._connect()
        try:
            self._ensure_schema(conn)
            for attempt in range(1, PG_ATTEMPTS + 1):
                try:
                    with conn.cursor() as cur:
                        result = body(cur)
                    conn.commit()
                    self.replans = attempt - 1
                    return result
                except retry:
                    conn.rollback()
                    time.sleep(random.uniform(0, 0.02 * attempt))  # let the winner's commit land
            raise ConflictError("vif_mac_registry_dsn", redacted(self.conninfo),
                                f"kept changing under this run ({PG_ATTEMPTS} attempts); too many runs "
                                "assign MACs in the same table at once")
        except psycopg.Error as err:
            raise BackendError("vif_mac_registry_dsn", redacted(self.conninfo),
                               f"failed: {str(err).strip()}") from None
        finally:
            conn.close()

    def update(self, planner: Planner, rng: macs.MacRange, write: bool = True) -> dict[str, Any]:
        def body(cur: Any) -> dict[str, Any]:
            before = self._rows(cur, rng)
            plan = planner(registry_data(before, rng))
            if write and plan["registry_changed"]:
                self._write(cur, rng, before, plan["registry"])
            return plan

        plan = self._transact(body)
        plan["replans"] = self.replans
        return plan

    def assignments(self, rng: macs.MacRange) -> dict[str, str]:
        rows = self._transact(lambda cur: self._rows(cur, rng))
        return macs.parse_registry(registry_data(rows, rng), rng)

    def import_assignments(self, incoming: Mapping[str, str], rng: macs.MacRange,
                           write: bool = True) -> tuple[int, bool]:
        def body(cur: Any) -> tuple[int, bool]:
            before = self._rows(cur, rng)
            merged = merge(before, incoming, rng)
            if write:
                self._write(cur, rng, before, merged)
            return len(merged) - len(before), len(merged) != len(before)

        return self._transact(body)


def backend(name: str, *, path: str = "", conninfo: str = "", table: str = DEFAULT_TABLE,
            lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> Any:
    """The registry backend ``name`` selects (the role's ``vif_mac_registry_backend``)."""
    if name == "file":
        return FileRegistry(path, lock_timeout)
    if name == "postgresql":
        return PostgresRegistry(conninfo, table)
    raise ValidationError("vif_mac_registry_backend", name, "must be 'file' or 'postgresql'")
