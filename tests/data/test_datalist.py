# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

import json

import pytest

from monai_adiff.data import (
    InputError,
    load_cases,
    read_datalist,
    scan_brats_folder,
    split_cases,
    with_image_key,
    write_datalist,
)
from tests.conftest import write_case


def test_scan_finds_cases_sorted(tiny_dataset):
    items, errors = scan_brats_folder(tiny_dataset)
    assert errors == []
    assert [it["case"] for it in items] == ["Case_0", "Case_1", "Case_2"]
    assert items[0]["flair"].endswith("Case_0/Case_0_flair.nii.gz") and items[0]["label"].endswith("Case_0_seg.nii.gz")


def test_scan_without_seg(tmp_path):
    write_case(tmp_path, "A", skip=("seg",))
    items, _ = scan_brats_folder(tmp_path)
    assert "label" not in items[0]
    items, errors = scan_brats_folder(tmp_path, require_label=True)
    assert items == [] and "missing segmentation" in str(errors[0])


def test_write_read_roundtrip_relative_paths(tiny_dataset, tmp_path):
    items, _ = scan_brats_folder(tiny_dataset)
    out = tmp_path / "lists" / "dl.json"
    write_datalist(out, {"training": items[:2], "test": items[2:]}, modalities=["flair"])
    content = json.loads(out.read_text(encoding="utf-8"))
    assert content["modalities"] == ["flair"]
    assert content["training"][0]["flair"].startswith("../tiny/")  # stored relative to the JSON
    back = read_datalist(out, "training")
    assert [b["flair"] for b in back] == [it["flair"] for it in items[:2]]
    assert read_datalist(out, "test")[0]["case"] == "Case_2"
    with pytest.raises(InputError, match="no 'validation' section"):
        read_datalist(out, "validation")


def test_read_plain_decathlon_list(tmp_path, tiny_dataset):
    items, _ = scan_brats_folder(tiny_dataset)
    p = tmp_path / "d.json"
    p.write_text(
        json.dumps(
            {"training": [{"image": items[0]["flair"], "label": items[0]["label"]}], "test": [items[1]["flair"]]}
        )
    )
    tr = read_datalist(p)
    assert tr[0]["case"] == "Case_0"  # derived from the file name
    te = read_datalist(p, "test")
    assert te[0]["image"] == items[1]["flair"] and te[0]["case"] == "Case_1"


def test_read_bad_json(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text("{not json", encoding="utf-8")
    with pytest.raises(InputError, match="not valid JSON") as e:
        read_datalist(p)
    assert "bad.json" in str(e.value)


def test_split_is_patient_level_seeded_and_order_free():
    items = [{"case": f"P{i:02d}"} for i in range(20)]
    a = split_cases(items, 0.1, 0.2, seed=3)
    b = split_cases(list(reversed(items)), 0.1, 0.2, seed=3)
    assert a == b
    assert (len(a["training"]), len(a["validation"]), len(a["test"])) == (14, 2, 4)
    names = [[it["case"] for it in a[k]] for k in ("training", "validation", "test")]
    assert len(set(sum(names, []))) == 20  # disjoint and complete
    assert split_cases(items, 0.1, 0.2, seed=4) != a
    assert len(split_cases(items)["training"]) == 20


def test_split_small_and_bad_fractions():
    items = [{"case": "a"}, {"case": "b"}]
    s = split_cases(items, 0.5, 0.0)
    assert len(s["training"]) == 2  # too few patients to hold one out
    with pytest.raises(ValueError):
        split_cases(items, 0.6, 0.5)


def test_with_image_key():
    items = [{"case": "a", "flair": "f.nii", "t2": "t2.nii"}, {"case": "b", "image": "x.nii"}]
    out = with_image_key(items, ["flair", "t2"])
    assert out[0]["image"] == ["f.nii", "t2.nii"] and out[1]["image"] == "x.nii"
    assert "image" not in items[0]  # inputs are not modified
    with pytest.raises(InputError, match="missing modalities"):
        with_image_key([{"case": "c", "flair": "f"}], ["flair", "t1"])


def test_load_cases_from_folder_and_datalist(tiny_dataset, tmp_path):
    folder = load_cases(dataset_dir=str(tiny_dataset), modalities=["flair"], test_fraction=0.34, seed=0)
    assert len(folder["test"]) == 1 and len(folder["training"]) == 2 and folder["validation"] == []
    p = write_datalist(tmp_path / "dl.json", {"training": folder["training"], "test": folder["test"]})
    listed = load_cases(datalist=p, modalities=["flair"])
    assert [c["case"] for c in listed["test"]] == [c["case"] for c in folder["test"]]
    assert listed["validation"] == []
    every = load_cases(dataset_dir=str(tiny_dataset), section="all", modalities=["flair"])
    assert [c["case"] for c in every["all"]] == ["Case_0", "Case_1", "Case_2"]
    assert len(load_cases(datalist=p, section="all", modalities=["flair"])["all"]) == 3
    with pytest.raises(ValueError):
        load_cases()
