"""openvif.vswitch core: plain Python, no Ansible imports.

This package is bundled into every module by AnsiballZ and is also installed
as-is on hosts that run vswitchd, so it must only use relative imports and the
standard library (pyroute2 is imported lazily by the kernel backend alone).
"""
