"""A tc ``bpf`` filter in direct-action mode on a device's clsact ingress, over rtnetlink, stdlib only.

The GSO path's attachment on kernels without tcx links (before Linux 6.6; Debian 12 runs 6.1).
Unlike a tcx link, such a filter outlives the process that made it, so it carries the daemon's
program name (``TCA_BPF_NAME``) for a later start to find and remove it, and it sits at a
priority of its own so that other filters on the device are left alone.
"""
from __future__ import annotations

import socket
import struct

from .rtnetlink import NLA_F_NESTED, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, attrs, exchange, nla

RTM_NEWQDISC, RTM_DELQDISC, RTM_NEWTFILTER, RTM_DELTFILTER, RTM_GETTFILTER = 36, 37, 44, 45, 46
TCA_KIND, TCA_OPTIONS = 1, 2
TCA_BPF_FD, TCA_BPF_NAME, TCA_BPF_FLAGS = 6, 7, 8
TCA_BPF_FLAG_ACT_DIRECT = 1
TC_H_CLSACT = 0xFFFFFFF1
CLSACT_HANDLE = 0xFFFF0000
INGRESS = 0xFFFFFFF2             # TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS)
EGRESS = 0xFFFFFFF3              # TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_EGRESS)
PRIORITY = 0x7677                # vswitchd's own priority on the ingress hook
EEXIST = 17
_INFO = PRIORITY << 16 | socket.htons(0x0003)   # ETH_P_ALL
_TCMSG = struct.Struct("=BxxxiIII")             # family, ifindex, handle, parent, info


def _tcmsg(ifindex: int, handle: int, parent: int, info: int = 0) -> bytes:
    return _TCMSG.pack(socket.AF_UNSPEC, ifindex, handle, parent, info)


def attach(ifindex: int, prog_fd: int, name: str, hook: int = INGRESS) -> tuple[int, str, bool]:
    """Put ``prog_fd`` on the device's ingress (or ``EGRESS``): (errno or 0, kernel's reason, whether the clsact
    qdisc is ours)."""
    qdisc = _tcmsg(ifindex, CLSACT_HANDLE, TC_H_CLSACT) + nla(TCA_KIND, b"clsact\0")
    errno, text, _replies = exchange(RTM_NEWQDISC, qdisc, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL)
    if errno not in (0, EEXIST):
        return errno, text or "clsact qdisc", False
    created = errno == 0
    options = (nla(TCA_BPF_FD, struct.pack("=I", prog_fd)) + nla(TCA_BPF_NAME, name.encode() + b"\0")
               + nla(TCA_BPF_FLAGS, struct.pack("=I", TCA_BPF_FLAG_ACT_DIRECT)))
    body = _tcmsg(ifindex, 1, hook, _INFO) + nla(TCA_KIND, b"bpf\0") + nla(TCA_OPTIONS | NLA_F_NESTED, options)
    errno, text, _replies = exchange(RTM_NEWTFILTER, body, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL)
    if errno and created:
        _delete_qdisc(ifindex)
    return errno, text, created


def detach(ifindex: int, delete_qdisc: bool) -> int:
    """Remove vswitchd's filter (its whole priority) and, if the qdisc was made for it, the qdisc; errno."""
    errno, _text, _replies = exchange(RTM_DELTFILTER, _tcmsg(ifindex, 0, INGRESS, _INFO), NLM_F_ACK)
    if delete_qdisc:
        errno = _delete_qdisc(ifindex) or errno
    return errno


def _delete_qdisc(ifindex: int) -> int:
    return exchange(RTM_DELQDISC, _tcmsg(ifindex, CLSACT_HANDLE, TC_H_CLSACT), NLM_F_ACK)[0]


def names(ifindex: int) -> list[str]:
    """The names of the bpf filters at vswitchd's priority on the device's ingress (none without clsact)."""
    errno, _text, replies = exchange(RTM_GETTFILTER, _tcmsg(ifindex, 0, INGRESS), NLM_F_DUMP)
    found = []
    for reply in [] if errno else replies:
        info = _TCMSG.unpack_from(reply)[4]
        fields = attrs(reply, _TCMSG.size, len(reply))
        if info >> 16 != PRIORITY or fields.get(TCA_KIND) != b"bpf\0" or TCA_OPTIONS not in fields:
            continue
        options = attrs(fields[TCA_OPTIONS], 0, len(fields[TCA_OPTIONS]))
        if TCA_BPF_NAME in options:
            found.append(options[TCA_BPF_NAME].split(b"\0", 1)[0].decode("ascii", "replace"))
    return found
