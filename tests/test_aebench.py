"""tools.aebench's divergence section in its quick form, on a real cluster: one node
cut off while 1% of the keys are overwritten without hints; one CLUSTER REPAIR must
repair them with traffic well under the data size, and a second must find nothing."""

from __future__ import annotations

import json

import pytest

from tools import aebench

pytestmark = pytest.mark.cluster


def test_a_one_percent_divergence_is_repaired_by_one_exchange(capsys):
    assert aebench.main(["--quick", "--only", "diverge"]) == 0
    result = json.loads(capsys.readouterr().out)["diverge"]
    assert result["changed"] == 30
    assert result["keys_repaired"] >= result["changed"]
    assert result["differing_after"] == 0
    assert result["bytes_ratio"] < 0.5
