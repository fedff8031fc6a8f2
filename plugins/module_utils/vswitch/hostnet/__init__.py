"""Moving the host's own IP from its NIC (uplink) to a bridge as one guarded transaction.

``spec``     what the operator asked for (validated, normalised)
``snapshot`` the host's addressing before the change, and how to put it back exactly
``netops``   the pyroute2 steps (bridge, enslave, addresses, routes, resolv.conf)
``dhcp``     a small DHCPv4 client over AF_PACKET (no dhclient/udhcpc needed on the host)
``probe``    ARP and ICMP checks that the new path works
``guard``    the detached supervisor/worker pair that applies, verifies, waits for the
             controller's confirmation and otherwise rolls back by itself
``actions``  the module's entry points (apply, confirm, report)

Standard library plus pyroute2 (imported lazily) only: this package is bundled into the
``vswitch_host_ip`` module and keeps running in the guard after the module has exited.
"""
