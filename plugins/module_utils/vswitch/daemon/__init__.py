"""vswitchd: the collection's userspace switching daemon.

Never imported by modules (so never bundled into them); installed on hosts as
``vswitch.daemon`` and run as ``python3 -m vswitch.daemon``. Standard library only.
"""
