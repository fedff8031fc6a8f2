"""The durable state: one versioned JSON file, replaced atomically.

A write goes to a temporary file in the same directory, is fsync'ed, renamed over the
state file and the directory is fsync'ed, so after a crash at any instant the file
holds either the previous configuration or the new one, never a mix or a torn write.
Format::

    {"format": "openvif-vswitchd", "version": 1, "serial": 7,
     "bridges": {"xenbr0": {"ageing_time": 300, "forward_delay": 15.0, "mac": null, "mtu": 1500,
                            "stp": false}},
     "ports": {"vif1.0": {"bridge": "xenbr0", "type": "system", "vlan": 10, "trunks": null,
                          "native_vlan": null, "mac": "00:16:3e:00:00:01", "promiscuous": false,
                          "uplink": false}}}
"""
from __future__ import annotations

import json
import os
from typing import Any

from .. import atomic
from ..errors import BackendError, ValidationError
from .config import Config

FORMAT = "openvif-vswitchd"
VERSION = 1


class StateFile:
    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        self.serial = 0

    def load(self) -> Config:
        """The saved configuration (empty if there is no file yet); raises if the file is unusable."""
        self._remove_stale_temporaries()
        try:
            with open(self.path, encoding="utf-8") as handle:
                data = json.load(handle)
        except FileNotFoundError:
            return Config()
        except (OSError, ValueError) as err:
            raise ValidationError("state_file", self.path, f"cannot be read: {err}") from err
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValidationError("state_file", self.path, f"is not a vswitchd state file (format {FORMAT!r})")
        if data.get("version") != VERSION:
            raise ValidationError("state_file", self.path, f"has version {data.get('version')!r}; this vswitchd "
                                                           f"reads version {VERSION}")
        self.serial = int(data.get("serial", 0))
        return Config.from_json(data)

    def _remove_stale_temporaries(self) -> None:
        """Temporary files of writes interrupted by a crash (the state file itself is intact)."""
        directory, base = os.path.split(self.path)
        try:
            names = os.listdir(directory)
        except OSError:
            return
        for name in names:
            if name.startswith(f".{base}.") and name.endswith(".tmp"):
                try:
                    os.unlink(os.path.join(directory, name))
                except OSError:
                    pass

    def document(self, config: Config, serial: int) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "serial": serial, **config.to_json()}

    def save(self, config: Config) -> None:
        serial = self.serial + 1
        body = json.dumps(self.document(config, serial), indent=1, sort_keys=True).encode() + b"\n"
        try:
            os.makedirs(os.path.dirname(self.path), mode=0o755, exist_ok=True)
            atomic.write(self.path, body, mode=0o600)
        except OSError as err:
            raise BackendError("state_file", self.path, f"could not be written ({err.strerror}); nothing was "
                                                        "changed") from err
        self.serial = serial
