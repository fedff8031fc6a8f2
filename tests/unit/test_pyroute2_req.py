from __future__ import annotations

import pytest
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch import pyroute2_req
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.errors import MissingFeatureError


@pytest.mark.parametrize("found", ["0.5.14", "0.6.13", "0.7.2", "0.7.7", "0.8.1", "0.9.7", "1.0"])
def test_recent_enough_for_the_kernel_datapath_passes(found):
    pyroute2_req.check(found)


@pytest.mark.parametrize("found", ["0.7.2", "0.7.10", "0.9.7"])
def test_recent_enough_for_the_host_ip_move_passes(found):
    pyroute2_req.check(found, pyroute2_req.HOST_IP_MOVE)


@pytest.mark.parametrize(("found", "need", "says"), [
    ("0.4.21", pyroute2_req.KERNEL_DATAPATH, "is too old for the kernel datapath: it needs pyroute2 >= 0.5.14"),
    ("0.5.13", pyroute2_req.KERNEL_DATAPATH, "is too old for the kernel datapath: it needs pyroute2 >= 0.5.14"),
    ("0.5.14", pyroute2_req.HOST_IP_MOVE, "is too old for the host IP move (vswitch_host_ip, the bridge role): "
                                          "it needs pyroute2 >= 0.7.2"),
    ("0.7.1", pyroute2_req.HOST_IP_MOVE, "it needs pyroute2 >= 0.7.2"),
    ("0.7.0rc1", pyroute2_req.HOST_IP_MOVE, "it needs pyroute2 >= 0.7.2"),
])
def test_too_old_names_what_it_found_and_what_it_needs(found, need, says):
    with pytest.raises(MissingFeatureError) as err:
        pyroute2_req.check(found, need)
    assert (err.value.field, err.value.value) == ("pyroute2", found)
    assert says in err.value.message
