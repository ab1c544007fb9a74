# SPDX-License-Identifier: Apache-2.0
"""The output contract: an AnomalyOutput packed into an image at the edge survives MONAI's decollation and unpacks by
name (SplitAnomalyOutputd), never by channel number."""

from __future__ import annotations

import pytest
import torch
from monai.data import MetaTensor, decollate_batch

from monai_adiff.output import AnomalyOutput, channel_names, slice_values
from monai_adiff.transforms import SplitAnomalyOutputd


def _output(b=2, s=5):
    g = torch.Generator().manual_seed(0)
    return AnomalyOutput(
        anomaly_map=torch.rand(b, 1, 6, 6, s, generator=g),
        pred_mask=(torch.rand(b, 1, 6, 6, s, generator=g) > 0.5).float(),
        pred_score=torch.rand(b, s, generator=g),
        pred_label=(torch.rand(b, s, generator=g) > 0.5).float(),
        maps={"vote": torch.rand(b, 1, 6, 6, s, generator=g)},
        values={"t_e": torch.arange(b * s, dtype=torch.float32).reshape(b, s)},
    )


def test_pack_and_unpack_by_name():
    out = _output()
    like = MetaTensor(torch.zeros(2, 1, 6, 6, 5), affine=torch.diag(torch.tensor([2.0, 2.0, 3.0, 1.0])))
    packed = out.to_image(like)
    assert packed.shape == (2, 3, 6, 6, 5) and channel_names(packed) == ["anomaly_map", "pred_mask", "vote"]
    assert torch.equal(packed.affine, like.affine) and "anomaly_channels" not in like.meta  # input meta untouched
    back = AnomalyOutput.from_image(packed)
    for name in ("anomaly_map", "pred_mask", "pred_score", "pred_label"):
        assert torch.equal(getattr(back, name), getattr(out, name)), name
    assert torch.equal(back.maps["vote"], out.maps["vote"]) and torch.equal(back.values["t_e"], out.values["t_e"])
    assert torch.equal(back.volume_score, out.pred_score.amax(1))


def test_decollated_items_split_into_named_keys():
    out = _output()
    packed = out.to_image(MetaTensor(torch.zeros(2, 1, 6, 6, 5)))
    items = decollate_batch({"pred": packed})
    for i, item in enumerate(items):
        d = SplitAnomalyOutputd(keys="pred")(item)
        assert d["pred"].shape == (1, 6, 6, 5) and torch.equal(d["pred"].as_tensor(), out.anomaly_map[i])
        assert torch.equal(d["pred_mask"].as_tensor(), out.pred_mask[i])
        assert torch.equal(d["vote"].as_tensor(), out.maps["vote"][i])
        assert torch.equal(d["pred_score"], out.pred_score[i]) and torch.equal(d["t_e"], out.values["t_e"][i])
        assert float(d["volume_score"]) == float(out.pred_score[i].max())
        assert float(d["volume_label"]) == float(out.pred_label[i].max())
        assert "anomaly_channels" not in d["pred"].meta and slice_values(d["pred"]) == {}


def test_a_bare_map_and_an_unnamed_stack():
    only_map = AnomalyOutput(anomaly_map=torch.rand(1, 1, 4, 4))
    item = decollate_batch({"pred": only_map.to_image()})[0]
    d = SplitAnomalyOutputd()(item)
    assert d["pred"].shape == (1, 4, 4) and "pred_mask" not in d and "pred_score" not in d
    assert channel_names(torch.rand(1, 1, 4, 4)) == ["anomaly_map"]  # a plain one-channel tensor is a map
    with pytest.raises(ValueError, match="named"):
        channel_names(torch.rand(1, 3, 4, 4))
