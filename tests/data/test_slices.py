# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.transforms import Compose

from monai_adiff.data import (
    BrainSliceDataset,
    build_slice_table,
    case_slice_table,
    scan_brats_folder,
    summarize_slice_table,
)
from monai_adiff.transforms import volume_preprocessing
from tests.conftest import write_case

RAS = np.diag([1.0, 1.0, 1.0, 1.0])


def test_case_slice_table_by_hand(tmp_path):
    # fixture geometry: ball brain, no brain in slices 0 and 15, lesion in slices 6..8
    item = write_case(tmp_path, "A")
    rows = case_slice_table(item, ["flair", "t2"], min_brain_fraction=0.0)
    assert len(rows) == 16 and rows[0]["case"] == "A"
    assert [r["slice"] for r in rows] == list(range(16))
    assert not rows[0]["brain"] and not rows[15]["brain"] and all(r["brain"] for r in rows[1:15])
    assert [r["label"] for r in rows] == [0] * 6 + [1] * 3 + [0] * 7
    seg = np.asarray(nib.load(item["label"]).dataobj)
    assert [r["tumour_area"] for r in rows] == [int((seg[..., k] > 0).sum()) for k in range(16)]
    s = summarize_slice_table(rows)["A"]
    assert s == {
        "slices": 16,
        "brain_slices": 14,
        "tumour_slices": 3,
        "healthy_brain_slices": 11,
        "unhealthy_brain_slices": 3,
    }


def test_slice_index_is_ras_axial(tmp_path):
    # an inferior-superior flipped affine: RAS slice k is file slice S-1-k
    flip = np.diag([1.0, 1.0, -1.0, 1.0])
    item = write_case(tmp_path, "A", affine=flip)
    rows = case_slice_table(item, ["flair"], min_brain_fraction=0.0)
    assert [r["label"] for r in rows] == [0] * 7 + [1] * 3 + [0] * 6


def test_min_brain_fraction(tmp_path):
    item = write_case(tmp_path, "A")
    loose = sum(r["brain"] for r in case_slice_table(item, ["flair"], 0.0))
    strict = sum(r["brain"] for r in case_slice_table(item, ["flair"], 0.6))
    assert strict < loose


def test_build_table_skips_bad_case(tiny_dataset):
    items, _ = scan_brats_folder(tiny_dataset)
    items.append({"case": "Ghost", "flair": str(tiny_dataset / "nope.nii.gz")})
    rows, errors = build_slice_table(items, ["flair"])
    assert {r["case"] for r in rows} == {"Case_0", "Case_1", "Case_2"}
    assert len(errors) == 1 and "nope.nii.gz" in str(errors[0])


def _dataset(items, selection, **kw):
    return BrainSliceDataset(
        items,
        volume_preprocessing(spatial_size=16, min_brain_fraction=0.0),
        selection=selection,
        modalities=["flair"],
        progress=False,
        **kw,
    )


@pytest.mark.parametrize(
    "selection,expected",
    # two lesion cases (3 tumour slices each) and one healthy case, 14 brain slices each, 16 slices each
    [("healthy", 14 * 3 - 6), ("unhealthy", 6), ("brain", 42), ("all", 48)],
)
def test_dataset_selection(tiny_dataset, selection, expected):
    items, _ = scan_brats_folder(tiny_dataset)
    ds = _dataset(items, selection)
    assert len(ds) == expected
    labels = ds.slice_labels.tolist()
    if selection == "healthy":
        assert set(labels) == {0} and int(ds.labels.sum()) == 0
    if selection == "unhealthy":
        assert set(labels) == {1} and all(ds.labels[i].sum() > 0 for i in range(len(ds)))


def test_dataset_items_and_cache(tiny_dataset):
    items, _ = scan_brats_folder(tiny_dataset)
    ds = _dataset(items, "brain")
    d = ds[0]
    assert d["image"].shape == (1, 16, 16) and d["image"].dtype == torch.float32
    assert d["brain"].shape == (1, 16, 16) and d["label"].shape == (1, 16, 16)
    assert float(d["image"].min()) >= -1 and float(d["image"].max()) <= 1
    assert d["case"] == "Case_0" and d["slice"] == 1
    # cached: removing every NIfTI file does not change what the dataset serves
    before = torch.stack([ds[i]["image"] for i in range(len(ds))])
    for f in tiny_dataset.rglob("*.nii.gz"):
        f.unlink()
    after = torch.stack([ds[i]["image"] for i in range(len(ds))])
    assert torch.equal(before, after)
    assert len(ds.table) == 48 and sum(r["selected"] for r in ds.table) == len(ds)


def test_dataset_never_takes_an_unlabelled_case_as_healthy(tmp_path, caplog):
    """A case without segmentation or slice labels may hold tumour: left out unless the user says it is healthy."""
    item = write_case(tmp_path, "A", skip=("seg",))
    labelled = write_case(tmp_path, "B")
    ds = _dataset([item, labelled], "healthy")
    assert set(ds.cases) == {"B"} and ds.unlabelled == ["A"] and "no segmentation" in caplog.text
    assert sum(r["case"] == "A" and r["brain"] for r in ds.table) > 0  # the table still says where its brain is
    ds = _dataset([item], "healthy", unlabelled_as_healthy=True)
    assert len(ds) == 14 and ds.slice_labels.sum() == 0


def test_dataset_skips_bad_case_and_applies_transform(tiny_dataset):
    items, _ = scan_brats_folder(tiny_dataset)
    items[1] = dict(items[1], flair=str(tiny_dataset / "Case_1" / "Case_1_seg.nii.gz"))  # healthy case: empty seg
    ds = _dataset(items, "brain", transform=lambda d: {**d, "image": d["image"] * 0})
    assert len(ds.errors) == 1 and "empty foreground" in str(ds.errors[0])
    assert set(ds.cases) == {"Case_0", "Case_2"}
    assert float(ds[0]["image"].abs().sum()) == 0


def test_dataset_float16_cache(tiny_dataset):
    items, _ = scan_brats_folder(tiny_dataset)
    ds = _dataset(items, "brain", cache_dtype="float16")
    assert ds.images.dtype == torch.float16 and ds[0]["image"].dtype == torch.float32


def test_chain_output_matches_table(tiny_dataset):
    items, _ = scan_brats_folder(tiny_dataset)
    item = dict(items[0], image=items[0]["flair"])
    d = Compose(volume_preprocessing(spatial_size=16, min_brain_fraction=0.0))(item)
    rows = case_slice_table(items[0], ["flair"], 0.0)
    assert d["slice_label"].tolist() == [r["label"] for r in rows]
    assert d["brain_slices"].tolist() == [r["brain"] for r in rows]
    assert d["image"].shape == (1, 16, 16, 16) and d["brain"].dtype == torch.bool


def test_dataset_empty_data_is_empty(tmp_path):
    ds = _dataset([], "healthy")
    assert len(ds) == 0 and ds.table == []
