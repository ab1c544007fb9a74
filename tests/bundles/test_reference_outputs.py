# SPDX-License-Identifier: Apache-2.0
"""Refactoring leaves every bundle's numbers unchanged: a fixed-seed train / calibrate / infer / evaluate run
(:mod:`tests.bundles.reference_run`) against the recorded numbers (see that module for when they were recorded)."""

from __future__ import annotations

import json
import math

import pytest

from tests.bundles.reference_run import REFERENCE, make_data, run_reference

pytestmark = pytest.mark.slow

#: numbers that changed on purpose, with the reason (checked exactly otherwise)
CHANGED: dict[str, str] = {}


def _close(a, b, path=""):
    if path in CHANGED:
        return
    if isinstance(a, dict):
        assert set(a) == set(b), f"{path}: keys {sorted(set(a) ^ set(b))} differ"
        for k in a:
            _close(a[k], b[k], f"{path}/{k}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), f"{path}: {a} != {b} (reference)"
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{path}/{i}")
    elif isinstance(a, float) or isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-9), f"{path}: {a} != {b} (reference)"
    else:
        assert a == b, f"{path}: {a} != {b} (reference)"


@pytest.fixture(scope="module")
def datalist(tmp_path_factory):
    return make_data(tmp_path_factory.mktemp("reference"))


@pytest.mark.parametrize("name", sorted(json.loads(REFERENCE.read_text())))
def test_outputs_match_the_reference(name, datalist, tmp_path):
    expected = json.loads(REFERENCE.read_text())[name]
    got = run_reference(name, tmp_path, datalist)
    _close(got, expected, name)
