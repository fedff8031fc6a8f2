# Copyright (c) 2026, openvif developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connection plugin: run tasks inside a named network namespace on the controller.

The lab's hypervisor hosts are network namespaces on one machine. This plugin is
the local connection with every command wrapped in ``ip netns exec <name>``, which
also gives the task the namespace's own /sys, so modules see exactly that host's
network. Files need no transfer: the namespace shares the controller's filesystem.
"""
from __future__ import annotations

DOCUMENTATION = r"""
name: netns
short_description: Run tasks inside a network namespace of the controller
version_added: "0.1.0"
description:
  - Runs each task on the controller inside the named network namespace (C(ip netns exec)),
    so one machine can play many hosts. Used by the lab and the integration tests.
  - Needs root on the controller and iproute2.
author:
  - openvif developers (@openvif)
options:
  netns_name:
    description: The network namespace (as listed by C(ip netns list)); defaults to the inventory hostname.
    type: str
    vars:
      - name: ansible_netns_name
    env:
      - name: ANSIBLE_NETNS_NAME
  vswitchd_socket:
    description:
      - The control socket of the vswitchd serving this namespace. Tasks run with C(VSWITCHD_SOCKET)
        set to it, so modules find that host's daemon whether they run from a playbook or ad hoc
        (C(ansible hv3 -m openvif.vswitch.vswitch_info)); several daemons share one machine in the lab.
      - Unset, modules use C(VSWITCHD_SOCKET) from the task's environment, or vswitchd's default socket.
    type: str
    vars:
      - name: vswitchd_socket
  openvif_state_dir:
    description:
      - Where this host keeps its declared networks (what C(vswitch.boot) restores). Tasks run with
        C(OPENVIF_STATE_DIR) set to it, ad hoc too; lab hosts share one filesystem, so each has its own.
      - Unset, modules use C(OPENVIF_STATE_DIR) from the task's environment, or C(/var/lib/openvif).
    type: str
    vars:
      - name: openvif_state_dir
"""

import os
import shlex

from ansible.errors import AnsibleConnectionFailure
from ansible.plugins.connection.local import Connection as LocalConnection


class Connection(LocalConnection):
    transport = "openvif.vswitch.netns"

    def _namespace(self) -> str:
        name = self.get_option("netns_name") or self._play_context.remote_addr
        if not name or not os.path.exists(f"/run/netns/{name}"):
            raise AnsibleConnectionFailure(f"network namespace {name!r} does not exist (ip netns list)")
        return name

    def exec_command(self, cmd, in_data=None, sudoable=True):
        # env(1) rather than the connection's environment: the inventory variables are the host's facts, and
        # `ansible` ad hoc has no `environment` keyword to carry them.
        settings = {"VSWITCHD_SOCKET": self.get_option("vswitchd_socket"),
                    "OPENVIF_STATE_DIR": self.get_option("openvif_state_dir")}
        assignments = " ".join(f"{name}={shlex.quote(value)}" for name, value in settings.items() if value)
        env = f"env {assignments} " if assignments else ""
        wrapped = f"ip netns exec {shlex.quote(self._namespace())} {env}/bin/sh -c {shlex.quote(cmd)}"
        return super().exec_command(wrapped, in_data=in_data, sudoable=sudoable)
