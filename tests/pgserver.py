"""A throwaway PostgreSQL server for tests: Debian's binaries, its own data directory and a unix
socket in a temporary directory, no TCP; started and stopped by PID."""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Optional


def pg_bindir() -> Optional[Path]:
    """The newest installed server's bin directory (postgresql-NN), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


class PgServer:
    """``start()`` runs initdb and postgres as the ``postgres`` user; ``conninfo`` reaches it."""

    def __init__(self) -> None:
        bindir = pg_bindir()
        if bindir is None:
            raise RuntimeError("PostgreSQL server binaries are missing; scripts/bootstrap.sh test installs "
                               "Debian's postgresql package")
        try:
            self.user = pwd.getpwnam("postgres")
        except KeyError:
            raise RuntimeError("no 'postgres' user; the postgresql package creates it") from None
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="openvif-pg-"))
        os.chmod(self.root, 0o755)
        self.data = self.root / "data"
        self.socket_dir = self.root / "run"
        self.proc: Optional[subprocess.Popen] = None

    @property
    def conninfo(self) -> str:
        return f"host={self.socket_dir} port=5432 user=postgres dbname=postgres"

    def _as_postgres(self) -> dict:
        return {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}

    def start(self, timeout: float = 30) -> None:
        for d in (self.data, self.socket_dir):
            d.mkdir()
            os.chown(d, self.user.pw_uid, self.user.pw_gid)
        subprocess.run([str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                        "--no-sync", "-E", "UTF8"], check=True, capture_output=True, cwd=self.root,
                       **self._as_postgres())
        self.log = open(self.root / "postgres.log", "w")
        self.proc = subprocess.Popen(
            [str(self.bindir / "postgres"), "-D", str(self.data), "-k", str(self.socket_dir),
             "-c", "listen_addresses=", "-c", "fsync=off", "-c", "max_connections=60"],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=self.root, **self._as_postgres())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited: {(self.root / 'postgres.log').read_text()}")
            ready = subprocess.run([str(self.bindir / "pg_isready"), "-h", str(self.socket_dir), "-q"], check=False)
            if ready.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError("postgres did not accept connections in time")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown: roll back, disconnect clients
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if hasattr(self, "log"):
            self.log.close()
        shutil.rmtree(self.root, ignore_errors=True)
