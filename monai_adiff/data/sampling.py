# SPDX-License-Identifier: Apache-2.0
"""Class-balanced drawing of training slices for weakly supervised (image-label) training.

PyTorch's ``WeightedRandomSampler`` does the drawing; MONAI has no class-balanced sampler for classification labels
(its ``RandWeightedCrop`` and ``RandCropByLabelClasses`` balance voxels within a volume, not items of a dataset).
This only turns per-item labels into the weights that give every class the same expected share of a batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import WeightedRandomSampler

__all__ = ["class_balanced_sampler"]


def class_balanced_sampler(
    labels: Sequence[int] | torch.Tensor, num_samples: int | None = None, seed: int = 0
) -> WeightedRandomSampler:
    """A sampler that draws (with replacement) every class present in ``labels`` equally often in expectation.

    Args:
        labels: one integer class label per dataset item (e.g. ``BrainSliceDataset.slice_labels``).
        num_samples: draws per epoch (default: ``len(labels)``, so an epoch keeps its length).
        seed: seed of the sampler's own generator (draws are reproducible and independent of global seeding).

    Raises:
        ValueError: ``labels`` is empty.
    """
    labels = torch.as_tensor(labels).long().flatten()
    if labels.numel() == 0:
        raise ValueError("class_balanced_sampler: no labels (empty dataset)")
    _, inverse, counts = labels.unique(return_inverse=True, return_counts=True)
    weights = (1.0 / counts.double())[inverse]  # each class's weights sum to 1
    generator = torch.Generator().manual_seed(int(seed))
    return WeightedRandomSampler(
        weights, num_samples=int(num_samples or labels.numel()), replacement=True, generator=generator
    )
