"""systemd integration done by hand: READY=1, WATCHDOG=1 at WATCHDOG_USEC/2, STOPPING=1, clean SIGTERM."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

from vswitchd_frames import MODULE_UTILS


def test_sd_notify_ready_watchdog_and_clean_stop(tmp_path):
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    address = f"\0vswitchd-test-{os.getpid()}-{time.monotonic_ns()}"
    notify.bind(address)
    notify.settimeout(10)
    sock = tmp_path / "ctl.sock"
    env = {**os.environ, "PYTHONPATH": str(MODULE_UTILS), "NOTIFY_SOCKET": "@" + address[1:],
           "WATCHDOG_USEC": "200000"}
    proc = subprocess.Popen([sys.executable, "-m", "vswitch.daemon", "--state-file", str(tmp_path / "s.json"),
                             "--socket", str(sock)], env=env, stderr=subprocess.PIPE)
    try:
        first = notify.recv(4096).decode()
        assert first.startswith("READY=1") and f"MAINPID={proc.pid}" in first
        assert sock.exists(), "READY only once the control socket listens"
        pings, start = 0, time.monotonic()
        while time.monotonic() - start < 1.0:
            if notify.recv(4096) == b"WATCHDOG=1":
                pings += 1
        assert pings >= 4, f"expected a ping every 0.1 s, got {pings} in 1 s"
        proc.send_signal(signal.SIGTERM)
        while (msg := notify.recv(4096)) == b"WATCHDOG=1":
            pass
        assert msg == b"STOPPING=1"
        assert proc.wait(10) == 0
        assert not sock.exists(), "the socket is removed on a clean stop"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        notify.close()


def test_watchdog_for_another_pid_is_ignored(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(MODULE_UTILS), "WATCHDOG_USEC": "100000", "WATCHDOG_PID": "1"}
    code = ("import sys; sys.argv=['x']; from vswitch.daemon.__main__ import Notifier; "
            "print(Notifier().watchdog_interval)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30, check=False)
    assert out.stdout.strip() == "0.0"
