# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

import nibabel as nib
import numpy as np
import torch
from monai.transforms import Compose

from monai_adiff.transforms import volume_preprocessing
from tests.conftest import write_case


def test_volume_chain_outputs(tmp_path):
    item = write_case(tmp_path, "A", shape=(24, 20, 16))
    d = Compose(volume_preprocessing(spatial_size=12, num_channels=2))(
        {"image": [item["flair"], item["t2"]], "label": item["label"]}
    )
    assert d["image"].shape == (2, 12, 12, 16) and d["label"].shape == (1, 12, 12, 16)
    assert d["brain"].shape == (1, 12, 12, 16)
    assert float(d["image"].min()) == -1.0 and float(d["image"].max()) <= 1.0
    assert set(torch.unique(d["label"]).tolist()) <= {0.0, 1.0}
    # RAS: the fixture is stored LPS, so the first in-plane axes are flipped relative to the file
    assert torch.allclose(d["image"].affine[:3, :3].diagonal().sign(), torch.ones(3, dtype=torch.float64))
    # background stays at -1 and the brain is above it
    assert float(d["image"][0][~d["brain"][0]].max()) == -1.0
    assert float(d["image"][0][d["brain"][0]].mean()) > -0.9


def test_volume_chain_native_grid_and_unlabelled(tmp_path):
    item = write_case(tmp_path, "A", skip=("seg",))
    d = Compose(volume_preprocessing(spatial_size=None, range_mode="slice", clip=False))({"image": item["flair"]})
    assert d["image"].shape == (1, 24, 24, 16) and "slice_label" not in d
    ras = np.asarray(nib.load(item["flair"]).dataobj)[::-1, ::-1, :]  # LPS -> RAS flip of the first two axes
    brain = torch.as_tensor(ras.copy() > 0)
    assert torch.equal(d["brain"][0], brain)
