# SPDX-License-Identifier: Apache-2.0
"""Schedulers of the method tests: Ho et al.'s linear schedule, with and without MONAI's default x0 clamp."""

from __future__ import annotations

import pytest
from monai.networks.schedulers import DDPMScheduler

T = 1000


@pytest.fixture(scope="module")
def sched():
    # MONAI's defaults: x0 predictions clamped to [-1, 1] (clip_sample), fixed-small variance
    return DDPMScheduler(num_train_timesteps=T, schedule="linear_beta", beta_start=1e-4, beta_end=0.02)


@pytest.fixture(scope="module")
def sched_noclip():
    return DDPMScheduler(T, schedule="linear_beta", beta_start=1e-4, beta_end=0.02, clip_sample=False)
