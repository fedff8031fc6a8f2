from __future__ import annotations

import pytest
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch import pyroute2_req
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.errors import MissingFeatureError


@pytest.mark.parametrize("found", ["0.7.2", "0.7.10", "0.8.1", "0.9.7", "1.0"])
def test_recent_enough_passes(found):
    pyroute2_req.check(found)


@pytest.mark.parametrize("found", ["0.5.14", "0.6.13", "0.7.1", "0.7.0rc1"])
def test_too_old_names_what_it_found_and_what_it_needs(found):
    with pytest.raises(MissingFeatureError) as err:
        pyroute2_req.check(found)
    assert (err.value.field, err.value.value) == ("pyroute2", found)
    assert "needs pyroute2 >= 0.7.2" in err.value.message
