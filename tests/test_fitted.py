# SPDX-License-Identifier: Apache-2.0
"""A calibration file fitted on another checkpoint is refused in one line naming both files; its own is taken."""

from __future__ import annotations

import json

import pytest
import torch
from monai.networks.schedulers import DDPMScheduler

from monai_adiff.errors import InputError
from monai_adiff.fitted import fitted_on
from monai_adiff.methods.anofpdm import FPDMInferer
from monai_adiff.methods.d3ad.inferer import D3ADInferer

CALIBRATIONS = {
    "anofpdm": (
        lambda s, cal, ckpt: FPDMInferer(s, num_steps=10, calibration_file=cal, checkpoint=ckpt),
        {"slice_score": "cosine", "guidance": 3.0, "score_threshold": 0.01, "m_max": 0.2},
        ("guidance", 3.0),
    ),
    "d3ad": (
        lambda s, cal, ckpt: D3ADInferer(s, calibration_file=cal, checkpoint=ckpt),
        {"latent_range": [0.1, 0.9], "feature_range": [0.0, 2.0], "image_range": [0.0, 0.5], "guidance": 2.0},
        ("latent_range", (0.1, 0.9)),
    ),
}


@pytest.mark.parametrize("bundle", sorted(CALIBRATIONS))
def test_a_calibration_of_another_checkpoint_is_refused(bundle, tmp_path):
    build, values, (key, expected) = CALIBRATIONS[bundle]
    scheduler = DDPMScheduler(num_train_timesteps=1000)
    mine, other = tmp_path / "model.pt", tmp_path / "retrained" / "model.pt"
    other.parent.mkdir()
    torch.save({"w": torch.zeros(3)}, mine)
    torch.save({"w": torch.ones(3)}, other)
    cal = tmp_path / "calibration.json"
    cal.write_text(json.dumps({**values, **fitted_on(other)}), encoding="utf-8")
    with pytest.raises(InputError) as err:
        build(scheduler, str(cal), str(mine))
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{cal}: was fitted on another checkpoint")
    assert fitted_on(other)["checkpoint"]["sha256"] in message and str(mine) in message
    # fitted on this checkpoint: taken
    cal.write_text(json.dumps({**values, **fitted_on(mine)}), encoding="utf-8")
    assert getattr(build(scheduler, str(cal), str(mine)), key) == expected
