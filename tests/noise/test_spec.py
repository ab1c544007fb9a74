# SPDX-License-Identifier: Apache-2.0
"""NoiseSpec: the papers' per-type defaults, one spec drawing the same field as the explicit noise functions."""

from __future__ import annotations

import pytest
import torch

from monai_adiff.noise import NoiseSpec, gaussian_noise, simplex_noise, tsimplex_noise


@pytest.mark.parametrize(
    "kind,expected",
    [
        ("simplex", {"octaves": 6, "persistence": 0.8, "frequency": 64.0}),  # AnoDDPM
        ("tsimplex", {"octaves": 6, "persistence": 0.9, "frequency": 64.0}),  # DTU-Net
        ("gaussian", {}),
    ],
)
def test_paper_defaults(kind, expected):
    spec = NoiseSpec(kind)
    assert spec.kwargs == expected and spec.to_dict() == {"noise_type": kind, **expected}
    assert NoiseSpec.of(kind) == spec and NoiseSpec.of(spec.to_dict()) == spec and NoiseSpec.of(spec) is spec


@pytest.mark.parametrize("kind,fn", [("simplex", simplex_noise), ("tsimplex", tsimplex_noise)])
def test_draws_the_explicit_field(kind, fn):
    spec = NoiseSpec(kind, octaves=3, persistence=0.5, frequency=16)
    t = torch.tensor([3, 700])
    got = spec((2, 2, 24, 24), t, seeds=[5, 9])
    want = fn((2, 2, 24, 24), t, seeds=[5, 9], octaves=3, persistence=0.5, frequency=16.0)
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_gaussian_uses_the_generator():
    got = NoiseSpec("gaussian")((2, 1, 8, 8), generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(got, gaussian_noise((2, 1, 8, 8), generator=torch.Generator().manual_seed(3)))


def test_bad_specs():
    with pytest.raises(ValueError, match="noise_type"):
        NoiseSpec("perlin")
    with pytest.raises(ValueError, match="octave"):
        NoiseSpec("gaussian", octaves=4)
