"""``ovs-vsctl`` for vswitchd: the command language Open vSwitch's callers speak.

Xen's ``vif-openvswitch``, libvirt and XAPI-style vif scripts plug VIFs with ``ovs-vsctl``
command lines; this package reads those command lines, turns every command of one line into
changes planned against vswitchd's state (the same model and planner as the modules), and
sends them as ONE transaction, so a line applies whole or not at all.

    syntax.py    the command line: global options, ``--``-separated commands, values and their printing
    tables.py    the Bridge, Port and Interface tables as views of the model
    commands.py  each command, and running a whole line against one state
    __main__.py  ``python3 -m vswitch.vsctl ARGS`` (installed as ``ovs-vsctl`` where OVS is not)
"""
