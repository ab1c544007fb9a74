# SPDX-License-Identifier: Apache-2.0
"""The reliability corpus: bad and unusual inputs through ``monai-adiff infer`` / ``datalist`` / ``monai.bundle``.

Every case is built here and asserts its exact outcome: one error line naming the file and the problem (and the
exit status), or a correct result (outputs on the input's grid, the same maps as the plain 0-background volume).
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from monai_adiff.bundle import find_bundle
from monai_adiff.cli import EXIT_PARTIAL, main
from tests.conftest import LPS_AFFINE, save_nifti, write_case
from tests.reliability.conftest import FAST, TINY_NET, save_checkpoint

SHAPE = (28, 28, 12)


def brain_volume(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A skull-stripped FLAIR-like volume (background 0, brain from dark CSF ~2 to bright ~200) and its brain."""
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, s) for s in SHAPE], indexing="ij")
    brain = (x**2 + y**2 + 0.5 * z**2) < 0.8
    tissue = 100 + 60 * np.sin(3 * x) * np.cos(2 * y) + rng.normal(0, 4, SHAPE)
    tissue[(x**2 + y**2) < 0.04] = 2.0  # a dark ventricle: the brain's minimum is near 0, as in real scans
    lesion = (np.abs(x - 0.3) < 0.2) & (np.abs(y + 0.2) < 0.2)
    tissue[lesion] = 200.0 + rng.normal(0, 4, int(lesion.sum()))  # a bright lesion
    return np.where(brain, np.clip(tissue, 1, None), 0).astype(np.float32), brain


def infer(tmp_path: Path, ckpt: Path, *volumes, out: str = "out", extra=()) -> tuple[int, list[str], Path]:
    """Run ``monai-adiff infer sss`` in-process; returns (exit status, stderr lines, output folder)."""
    import io
    from contextlib import redirect_stderr, redirect_stdout

    err, sink = io.StringIO(), io.StringIO()
    dest = tmp_path / out
    args = ["infer", "sss", *map(str, volumes), "--checkpoint", str(ckpt), "--out", str(dest), "--no-overlay"]
    args += [f"--set={k}={v}" for k, v in FAST.items()] + list(extra)
    with redirect_stderr(err), redirect_stdout(sink):
        code = main(args)
    return code, err.getvalue().strip().splitlines(), dest


def outputs(dest: Path, case: str) -> tuple[nib.Nifti1Image, nib.Nifti1Image]:
    return nib.load(dest / f"{case}_anomaly_map.nii.gz"), nib.load(dest / f"{case}_anomaly_mask.nii.gz")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_ckpt):
    """The plain volume (float, background 0, LPS) and its outputs: the oracle of every 'correct result' case."""
    root = tmp_path_factory.mktemp("ref")
    vol, brain = brain_volume()
    path = save_nifti(root / "in" / "plain.nii.gz", vol)
    code, err, dest = infer(root, tiny_ckpt, path)
    assert code == 0, err
    amap, mask = outputs(dest, "plain")
    return {"volume": vol, "brain": brain, "map": np.asarray(amap.dataobj), "mask": np.asarray(mask.dataobj)}


# ----------------------------------------------------------------------------------------------------------------
# bad inputs: one line naming the file and the problem, exit status 1 (nothing written)


def _corrupt(p: Path):
    p.write_bytes(b"this is not a NIfTI file at all" * 20)


def _truncated(p: Path):
    save_nifti(p, brain_volume()[0])
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])


def _empty(p: Path):
    p.write_bytes(b"")


BAD_VOLUMES = {
    "corrupt": (_corrupt, "cannot be read as NIfTI"),
    "truncated": (_truncated, "voxel data cannot be read"),
    "empty-file": (_empty, "cannot be read as NIfTI"),
    "2d": (lambda p: save_nifti(p, np.ones((16, 16), np.float32)), "expected a 3D volume, got a 2D image"),
    "4d": (lambda p: save_nifti(p, np.ones((16, 16, 8, 3), np.float32)), "expected a 3D volume, got a 4D image"),
    "nan": (
        lambda p: save_nifti(p, np.where(brain_volume()[1], np.nan, 0).astype(np.float32)),
        "non-finite voxels (NaN/Inf)",
    ),
    "all-zero": (lambda p: save_nifti(p, np.zeros(SHAPE, np.float32)), "has an empty foreground"),
    "no-background": (
        lambda p: save_nifti(p, np.random.default_rng(0).normal(100, 10, SHAPE).astype(np.float32)),
        "has no constant background",
    ),
    "missing": (lambda p: None, "file does not exist"),
}


@pytest.mark.parametrize("kind", sorted(BAD_VOLUMES))
def test_bad_volume_is_refused_in_one_line(kind, tmp_path, tiny_ckpt):
    make, problem = BAD_VOLUMES[kind]
    path = tmp_path / "in" / f"{kind} scan.nii.gz"
    path.parent.mkdir(parents=True)
    make(path)
    code, err, dest = infer(tmp_path, tiny_ckpt, path)
    assert code == 1
    assert err[0].startswith(f"error: {path}: ") and problem in err[0], err
    assert err[-1] == "error: none of the 1 requested case(s) can be scored" and len(err) == 2
    assert not list(dest.glob("*.nii.gz"))


def test_no_background_error_says_what_to_provide(tmp_path, tiny_ckpt):
    path = save_nifti(tmp_path / "in" / "raw.nii.gz", np.random.default_rng(0).normal(100, 10, SHAPE))
    code, err, _ = infer(tmp_path, tiny_ckpt, path)
    assert code == 1 and "raw_brainmask.nii.gz" not in err[0] and "<case>_brainmask.nii.gz" in err[0]


def _checkpoint_cases(tmp: Path) -> dict[str, tuple[Path, str]]:
    bad = {}
    p = tmp / "garbage.pt"
    p.write_bytes(b"\x80\x04not a checkpoint")
    bad["garbage"] = (p, "cannot be read as a PyTorch checkpoint (UnpicklingError")
    p = tmp / "empty.pt"
    p.write_bytes(b"")
    bad["empty"] = (p, "checkpoint file is empty")
    p = tmp / "pickled_code.pt"
    torch.save(torch.nn.Linear(2, 2), p)  # a whole module: needs pickled code, refused by weights_only loading
    bad["pickled-code"] = (p, "cannot be read as a PyTorch checkpoint")
    p = save_checkpoint(tmp / "other_size.pt", "sss", {**TINY_NET, "network_def#channels": [16, 16, 32]})
    p = tmp / "other_size.pt"
    ck = torch.load(p, weights_only=True)
    ck["info"]["config"]["network_def#channels"] = [32, 32, 64]  # what a user means to pass, not what was trained
    bad["missing"] = (tmp / "nope.pt", "checkpoint file does not exist")
    return bad


@pytest.mark.parametrize("kind", ["garbage", "empty", "pickled-code", "missing"])
def test_unreadable_checkpoint_is_refused_before_any_volume(kind, tmp_path, reference):
    path, problem = _checkpoint_cases(tmp_path)[kind]
    vol = save_nifti(tmp_path / "in" / "v.nii.gz", reference["volume"])
    code, err, _ = infer(tmp_path, path, vol)
    assert code == 1 and len(err) == 1 and err[0].startswith(f"error: {path}: ") and problem in err[0], err
    assert "weights_only=False" not in err[0]


def test_checkpoint_of_another_size_names_what_differs(tmp_path, reference, tiny_ckpt):
    """Without its record the network is rebuilt from the bundle config: one line saying which sizes differ."""
    vol = save_nifti(tmp_path / "in" / "v.nii.gz", reference["volume"])
    other = save_checkpoint(tmp_path / "big.pt", "sss", {**TINY_NET, "network_def#channels": [16, 16, 32]})
    # the record rebuilds the network, so the checkpoint works without an args file ...
    code, err, _ = infer(tmp_path, other, vol)
    assert code == 0, err
    # ... and an args file that contradicts it is refused in one line naming the file and the sizes
    code, err, _ = infer(tmp_path, other, vol, out="o2", extra=["--set", "network_def#channels=[8, 16, 16]"])
    assert code == 1 and len(err) == 1, err
    assert err[0] == (
        f"error: {other}: does not fit the sss network: it expects channels [8, 16, 16], checkpoint has "
        "[16, 16, 32]: pass the args file it was trained with (monai-adiff infer reads it from the checkpoint)"
    )


def test_checkpoint_without_record_of_another_bundle(tmp_path, reference):
    """A bare state dict of another network (AnoFPDM's, 4 channels): key/shape summary, not a traceback."""
    ck = save_checkpoint(tmp_path / "anofpdm.pt", "anofpdm", TINY_NET)
    bare = tmp_path / "bare.pt"
    torch.save(torch.load(ck, weights_only=True)["model"], bare)
    vol = save_nifti(tmp_path / "in" / "v.nii.gz", reference["volume"])
    args = tmp_path / "tiny_args.json"
    args.write_text(json.dumps(TINY_NET), encoding="utf-8")
    code, err, _ = infer(tmp_path, bare, vol, extra=["--args-file", str(args)])
    assert code == 1 and len(err) == 1, err
    assert err[0].startswith(f"error: {bare}: parameters do not fit the network (") and "of the sss bundle" in err[0]
    assert "differently shaped" in err[0] and "pass the args file it was trained with" in err[0]


def test_bundle_run_names_the_checkpoint(tmp_path, reference):
    """The same check through ``python -m monai.bundle run`` (in-process): an InputError naming the file."""
    from monai_adiff.bundle import run_bundle
    from monai_adiff.errors import find_input_error

    vol = save_nifti(tmp_path / "in" / "v.nii.gz", reference["volume"])
    ck = save_checkpoint(tmp_path / "m.pt", "sss", {**TINY_NET, "network_def#channels": [16, 16, 32]})
    with pytest.raises(Exception) as raised:
        run_bundle(
            "sss",
            "inference",
            {**TINY_NET, **FAST, "data": [{"case": "v", "image": str(vol)}], "ckpt_path": str(ck)},
            logging_file=False,
        )
    e = find_input_error(raised.value)
    assert (
        e is not None and e.path == str(ck) and "it expects channels [8, 16, 16], checkpoint has [16, 16, 32]" in str(e)
    )


@pytest.mark.parametrize("kind", ["out-is-file", "out-under-file", "out-is-input", "unknown-bundle"])
def test_arguments_are_checked_before_any_work(kind, tmp_path, tiny_ckpt, reference):
    vol = save_nifti(tmp_path / "in" / "v.nii.gz", reference["volume"])
    blocker = tmp_path / "file.txt"
    blocker.write_text("x", encoding="utf-8")
    out = {"out-is-file": blocker, "out-under-file": blocker / "sub", "out-is-input": tmp_path / "in"}.get(
        kind, tmp_path / "o"
    )
    args = ["infer", "nosuch" if kind == "unknown-bundle" else "sss", str(vol), "--checkpoint", str(tiny_ckpt)]
    import io
    from contextlib import redirect_stderr

    err = io.StringIO()
    with redirect_stderr(err):
        code = main(args + ["--out", str(out)])
    lines = err.getvalue().strip().splitlines()
    assert code == 1 and len(lines) == 1, lines
    expected = {
        "out-is-file": f"error: {out}: output path exists and is not a folder",
        "out-under-file": f"error: {out}: output folder cannot be written",
        "out-is-input": f"error: {out}: output folder is an input folder; choose another one",
        "unknown-bundle": "error: nosuch: no such model folder, and not one of the bundles",
    }[kind]
    assert lines[0].startswith(expected), lines
    assert blocker.read_text(encoding="utf-8") == "x"


def test_partly_failed_batch_exits_non_zero_and_writes_the_rest(tmp_path, tiny_ckpt, reference):
    good = save_nifti(tmp_path / "in" / "good.nii.gz", reference["volume"])
    missing = tmp_path / "in" / "missing.nii.gz"
    flat = save_nifti(tmp_path / "in" / "flat.nii.gz", np.ones((8, 8), np.float32))
    code, err, dest = infer(tmp_path, tiny_ckpt, good, missing, flat)
    assert code == EXIT_PARTIAL
    assert err == [
        f"error: {missing}: file does not exist",
        f"error: {flat}: expected a 3D volume, got a 2D image of shape (8, 8)",
        "error: 2 of 3 requested cases failed (listed above)",
    ]
    assert sorted(p.name for p in dest.glob("*.nii.gz")) == ["good_anomaly_map.nii.gz", "good_anomaly_mask.nii.gz"]


# ----------------------------------------------------------------------------------------------------------------
# unusual but valid inputs: a correct result


def _zscored(vol, brain):
    z = np.full(vol.shape, -1.5, np.float32)
    z[brain] = (vol[brain] - vol[brain].mean()) / vol[brain].std()
    return z


VARIANTS = {
    "z-scored (background -1.5)": lambda v, b: _zscored(v, b),
    "int16 with an offset of 1000": lambda v, b: (v + 1000).astype(np.int16),
    "min-max scaled to [0, 1]": lambda v, b: v / v.max(),
    "int16": lambda v, b: np.round(v).astype(np.int16),
}


@pytest.mark.parametrize("kind", sorted(VARIANTS))
def test_standardised_scans_score_like_their_original(kind, tmp_path, tiny_ckpt, reference):
    """Scans that pipelines re-scale score as their 0-background original: maps agree, masks Dice >= 0.95."""
    vol = VARIANTS[kind](reference["volume"], reference["brain"])
    path = save_nifti(tmp_path / "in" / "scan.nii.gz", vol)
    code, err, dest = infer(tmp_path, tiny_ckpt, path)
    assert code == 0, err
    amap, mask = (np.asarray(i.dataobj) for i in outputs(dest, "scan"))
    ref_map = reference["map"]
    assert np.corrcoef(amap.ravel(), ref_map.ravel())[0, 1] > 0.99
    thr = np.quantile(ref_map[reference["brain"]], 0.9)
    a, b = amap > thr, ref_map > thr
    assert 2 * (a & b).sum() / (a.sum() + b.sum()) >= 0.95
    assert (np.asarray(mask) == reference["mask"]).mean() > 0.99


def test_saturated_region_does_not_black_out_the_brain():
    """An int16 volume clipped at 32767 over a region: the rest of the brain keeps its scaled intensities."""
    from monai.transforms import Compose

    from monai_adiff.transforms import volume_preprocessing

    vol, brain = brain_volume()
    scaled = np.round(vol * 100).astype(np.int16)  # up to 20000
    sat = scaled.copy()
    region = brain & (np.arange(SHAPE[0])[:, None, None] < 12)
    sat[region] = 32767  # 40 % of the brain saturated
    pre = Compose(volume_preprocessing(spatial_size=None, num_channels=1, load=False))
    a = pre({"image": torch.as_tensor(scaled[None].astype(np.float32))})["image"][0].numpy()
    b = pre({"image": torch.as_tensor(sat[None].astype(np.float32))})["image"][0].numpy()
    rest = brain & ~region
    # the 99th percentile of the unsaturated voxels sets the scale: the rest of the brain keeps a normal range
    assert np.median(b[rest]) > -0.2 and abs(np.median(b[rest]) - np.median(a[rest])) < 0.4
    assert np.all(b[region] == 1.0)  # the saturated region is clipped to the top of the range


def test_brain_mask_beside_an_unstripped_volume(tmp_path, tiny_ckpt, reference):
    """No constant background, but ``<case>_brainmask.nii.gz`` beside it: scored, and only inside the mask."""
    vol, brain = reference["volume"], reference["brain"]
    noisy = np.where(brain, vol, np.random.default_rng(1).uniform(0, 30, vol.shape)).astype(np.float32)
    path = save_nifti(tmp_path / "in" / "head.nii.gz", noisy)
    save_nifti(tmp_path / "in" / "head_brainmask.nii.gz", brain.astype(np.uint8))
    code, err, dest = infer(tmp_path, tiny_ckpt, path)
    assert code == 0, err
    amap, mask = (np.asarray(i.dataobj) for i in outputs(dest, "head"))
    assert not amap[~brain].any() and not mask[~brain].any()
    assert np.corrcoef(amap.ravel(), reference["map"].ravel())[0, 1] > 0.99


def test_outputs_on_the_input_grid_inside_the_brain_with_the_usual_mode(tmp_path, tiny_ckpt, reference):
    """Non-RAS (LPS), anisotropic voxels, a path with spaces and non-ASCII characters: outputs keep the input's
    shape and affine, stay inside the brain, are readable by others (umask mode, not the temporary 0600), and
    equal the outputs of the same data stored in RAS order."""
    vol, brain = reference["volume"], reference["brain"]
    aniso = LPS_AFFINE @ np.diag([1.0, 1.0, 3.0, 1.0])
    try:
        e, u = ("é", "ü") if "éü".encode(sys.getfilesystemencoding()) else ("e", "u")
    except UnicodeEncodeError:  # an ASCII-only locale: such paths cannot exist here at all
        e, u = "e", "u"
    path = save_nifti(tmp_path / f"in dir {e}" / f"scan {u}.nii.gz", vol, aniso)
    code, err, dest = infer(tmp_path, tiny_ckpt, path, out=f"out {e}")
    assert code == 0, err
    amap, mask = outputs(dest, f"scan {u}")
    assert amap.shape == mask.shape == vol.shape
    np.testing.assert_allclose(amap.affine, aniso, atol=1e-5)
    m = np.asarray(mask.dataobj)
    assert m.any() and not m[~brain].any() and not np.asarray(amap.dataobj)[~brain].any()
    umask = os.umask(0)
    os.umask(umask)
    for f in dest.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o666 & ~umask, f
    # the same voxels stored RAS (LPS flips x and y): the same result, flipped back
    ras = save_nifti(tmp_path / "ras" / "ras.nii.gz", vol[::-1, ::-1].copy(), np.diag([1.0, 1.0, 3.0, 1.0]))
    code, err, dest2 = infer(tmp_path, tiny_ckpt, ras, out="out_ras")
    assert code == 0, err
    ras_map = np.asarray(outputs(dest2, "ras")[0].dataobj)
    np.testing.assert_allclose(ras_map[::-1, ::-1], np.asarray(amap.dataobj), rtol=1e-4, atol=1e-6)


def test_datalist_reports_label_shape_mismatch_and_missing_modality(tmp_path):
    root = tmp_path / "data"
    write_case(root, "Good", seed=0)
    write_case(root, "BadLabel", seed=1)
    save_nifti(root / "BadLabel" / "BadLabel_seg.nii.gz", np.zeros((24, 24, 15), np.int16))
    write_case(root, "NoT2", seed=2, skip=("t2",))
    import io
    from contextlib import redirect_stderr, redirect_stdout

    err = io.StringIO()
    with redirect_stderr(err), redirect_stdout(io.StringIO()):
        code = main(["datalist", str(root), "--out", str(tmp_path / "dl.json")])
    lines = sorted(err.getvalue().strip().splitlines())
    assert code == EXIT_PARTIAL and (tmp_path / "dl.json").is_file()
    assert len(lines) == 2
    assert lines[0].startswith(f"error: skipped {root / 'BadLabel' / 'BadLabel_seg.nii.gz'}: label shape (24, 24, 15)")
    assert lines[1] == f"error: skipped {root / 'NoT2'}: missing modality 't2' (expected NoT2_t2.nii.gz)"


def test_missing_modality_for_a_four_modality_bundle(tmp_path):
    tiny_ckpt = save_checkpoint(tmp_path / "anofpdm.pt", "anofpdm", TINY_NET)
    root = tmp_path / "data"
    write_case(root, "NoT1ce", skip=("t1ce",))
    import io
    from contextlib import redirect_stderr, redirect_stdout

    err = io.StringIO()
    with redirect_stderr(err), redirect_stdout(io.StringIO()):
        code = main(
            ["infer", "anofpdm", str(root / "NoT1ce"), "--checkpoint", str(tiny_ckpt), "--out", str(tmp_path / "o")]
        )
    lines = err.getvalue().strip().splitlines()
    assert code == 1 and lines[0] == f"error: {root / 'NoT1ce'}: missing modality 't1ce' (expected NoT1ce_t1ce.nii.gz)"


def test_bad_config_override_is_one_line(tmp_path, tiny_ckpt, reference):
    """An override the network refuses (channels not divisible by the norm groups): one line naming the component."""
    vol = save_nifti(tmp_path / "in" / "v.nii.gz", reference["volume"])
    code, err, _ = infer(tmp_path, tiny_ckpt, vol, extra=["--set", "network_def#norm_num_groups=5"])
    assert code == 1 and len(err) == 1, err
    assert err[0].startswith("error: Failed to instantiate component 'monai.networks.nets.DiffusionModelUNet'")
    assert err[0].endswith("ValueError: DiffusionModelUNet expects all num_channels being multiple of norm_num_groups")


def test_checkpoint_of_another_bundle_with_its_record(tmp_path):
    """An SSS checkpoint given to the 4-modality AnoFPDM bundle: named as the other bundle's, in one line."""
    sss = save_checkpoint(tmp_path / "sss.pt", "sss", TINY_NET)
    root = tmp_path / "data"
    write_case(root, "Case")
    args = tmp_path / "a.json"
    args.write_text(
        json.dumps({**TINY_NET, "modalities": ["flair", "t1", "t1ce", "t2"], "num_steps": 4}), encoding="utf-8"
    )
    import io
    from contextlib import redirect_stderr, redirect_stdout

    err = io.StringIO()
    with redirect_stderr(err), redirect_stdout(io.StringIO()):
        code = main(
            [
                "infer",
                "anofpdm",
                str(root / "Case"),
                "--checkpoint",
                str(sss),
                "--args-file",
                str(args),
                "--out",
                str(tmp_path / "o"),
            ]
        )
    lines = [ln for ln in err.getvalue().strip().splitlines() if ln.startswith("error:")]
    version = json.loads((find_bundle("sss") / "configs" / "metadata.json").read_text(encoding="utf-8"))["version"]
    assert code == 1 and lines == [
        f"error: {sss}: is a checkpoint of the 'sss' bundle {version}, whose network does not fit the anofpdm bundle's"
    ]


def test_case_folder_with_a_brain_mask(tmp_path, tiny_ckpt):
    """A BraTS-style case folder whose FLAIR has a noisy background and ``<case>_brainmask.nii.gz`` beside it."""
    root = tmp_path / "data"
    item = write_case(root, "Noisy")
    flair = nib.load(item["flair"])
    data = np.asarray(flair.dataobj).astype(np.float32)
    brain = data != 0
    noisy = np.where(brain, data, np.random.default_rng(0).uniform(1, 20, data.shape)).astype(np.float32)
    save_nifti(Path(item["flair"]), noisy, flair.affine)
    case_dir = root / "Noisy"
    code, err, _ = infer(tmp_path, tiny_ckpt, case_dir, out="o1")
    assert code == 1 and "has no constant background" in err[0]
    save_nifti(case_dir / "Noisy_brainmask.nii.gz", brain.astype(np.uint8), flair.affine)
    code, err, dest = infer(tmp_path, tiny_ckpt, case_dir, out="o2")
    assert code == 0, err
    amap, mask = (np.asarray(i.dataobj) for i in outputs(dest, "Noisy"))
    assert amap[brain].any() and not amap[~brain].any() and not mask[~brain].any()


@pytest.mark.parametrize("kind", ["out-is-folder", "out-under-file"])
def test_datalist_checks_its_output_before_scanning(kind, tmp_path):
    root = tmp_path / "data"
    write_case(root, "Good")
    blocker = tmp_path / "file.txt"
    blocker.write_text("x", encoding="utf-8")
    out = tmp_path if kind == "out-is-folder" else blocker / "dl.json"
    import io
    from contextlib import redirect_stderr, redirect_stdout

    err = io.StringIO()
    with redirect_stderr(err), redirect_stdout(io.StringIO()):
        code = main(["datalist", str(root), "--out", str(out)])
    lines = err.getvalue().strip().splitlines()
    expected = {
        "out-is-folder": f"error: {tmp_path}: is a folder; --out names the datalist JSON file to write",
        "out-under-file": f"error: {blocker}: output path exists and is not a folder",
    }[kind]
    assert code == 1 and len(lines) == 1 and lines[0].startswith(expected), lines


# ----------------------------------------------------------------------------------------------------------------
# many inputs into one folder: names that cannot collide, reruns that finish the work, real paths


def test_inputs_with_the_same_file_name_get_distinct_outputs(tmp_path, tiny_ckpt, reference):
    """subj01/FLAIR.nii.gz and subj02/FLAIR.nii.gz: two output pairs named after their folders, each the map of its
    own input (the second one is the first flipped, so the maps differ)."""
    vol = reference["volume"]
    a = save_nifti(tmp_path / "in" / "subj01" / "FLAIR.nii.gz", vol)
    b = save_nifti(tmp_path / "in" / "subj02" / "FLAIR.nii.gz", vol[::-1].copy())
    code, err, dest = infer(tmp_path, tiny_ckpt, a, b)
    assert code == 0, err
    first, second = (np.asarray(outputs(dest, c)[0].dataobj) for c in ("subj01_FLAIR", "subj02_FLAIR"))
    np.testing.assert_allclose(first, reference["map"], rtol=1e-5, atol=1e-6)
    assert not np.allclose(first, second)
    # the same file twice is refused before any work
    code, err, _ = infer(tmp_path, tiny_ckpt, a, a, out="twice")
    assert code == 1 and len(err) == 1 and "is given twice" in err[0], err
    assert not list((tmp_path / "twice").glob("*.nii.gz"))


def test_a_rerun_skips_finished_cases_and_refuses_another_models_outputs(tmp_path, tiny_ckpt, reference):
    path = save_nifti(tmp_path / "in" / "plain.nii.gz", reference["volume"])
    code, err, dest = infer(tmp_path, tiny_ckpt, path)
    assert code == 0, err
    stamp = (dest / "plain_anomaly_map.nii.gz").stat().st_mtime_ns
    code, err, _ = infer(tmp_path, tiny_ckpt, path)
    assert code == 0 and err == ["1 case(s) already written there, skipped (--overwrite recomputes them)"]
    assert (dest / "plain_anomaly_map.nii.gz").stat().st_mtime_ns == stamp
    code, err, _ = infer(tmp_path, tiny_ckpt, path, extra=["--overwrite"])
    assert code == 0 and (dest / "plain_anomaly_map.nii.gz").stat().st_mtime_ns != stamp
    # another checkpoint into the same folder: refused before computing, unless --overwrite
    other = save_checkpoint(tmp_path / "other.pt", "sss", TINY_NET, seed=1)
    code, err, _ = infer(tmp_path, other, path)
    assert code == 1 and len(err) == 1 and "holds outputs of another model" in err[0]
    assert infer(tmp_path, other, path, extra=["--overwrite"])[0] == 0


def test_a_link_to_an_input_folder_is_refused_as_output_before_computing(tmp_path, tiny_ckpt, reference):
    path = save_nifti(tmp_path / "in" / "plain.nii.gz", reference["volume"])
    (tmp_path / "link").symlink_to(tmp_path / "in", target_is_directory=True)
    code, err, _ = infer(tmp_path, tiny_ckpt, path, out="link")
    assert code == 1 and len(err) == 1 and "output folder is an input folder" in err[0]
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == ["plain.nii.gz"]


def test_a_case_without_segmentation_is_unlabelled_never_healthy(tmp_path, capsys):
    """datalist shows '-' (unknown) for it and says so in one line; train refuses to take its slices as healthy
    unless told so."""
    from monai_adiff.data.synthetic import make_demo_dataset

    data = tmp_path / "data"
    make_demo_dataset(data, cases=5, seed=2, shape=(32, 32, 16))
    (data / "Demo_003" / "Demo_003_seg.nii.gz").unlink()
    assert main(["datalist", str(data), "--summary", "--modalities", "flair"]) == 0
    captured = capsys.readouterr()
    row = next(line for line in captured.out.splitlines() if line.startswith("Demo_003"))
    assert row.split()[3:] == ["-", "-", "-"]  # tumour, healthy brain, unhealthy brain: unknown, not 0
    notes = [line for line in captured.err.splitlines() if line]
    assert len(notes) == 1 and "Demo_003" in notes[0] and "without a segmentation" in notes[0]
    code = main(["train", "sss", str(data), "--out", str(tmp_path / "m"), "--val-fraction", "0.2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "Demo_003" in err[0] and "would be taken as healthy" in err[0]
    assert not (tmp_path / "m" / "model.pt").exists()


def _phantom_head(folder: Path) -> tuple[Path, np.ndarray]:
    """A phantom FLAIR brain wrapped in a dark skull and a bright scalp, on a zero background (a head that was not
    skull-stripped), and the brain mask of the phantom."""
    from scipy import ndimage

    from monai_adiff.data.synthetic import make_demo_dataset

    make_demo_dataset(folder / "src", cases=1, seed=4)
    src = nib.load(next((folder / "src").glob("*/*_flair.nii.gz")))
    x = np.asarray(src.dataobj, dtype=np.float32)
    brain = x > 0
    skull = ndimage.binary_dilation(brain, iterations=3) & ~brain
    scalp = ndimage.binary_dilation(brain, iterations=6) & ~brain & ~skull
    ref = float(np.median(x[brain]))
    head = np.where(skull, 0.05 * ref, np.where(scalp, 1.2 * ref, x))
    path = folder / "in" / "head_flair.nii.gz"
    path.parent.mkdir(parents=True)
    nib.save(nib.Nifti1Image(head.astype(np.float32), src.affine), str(path))
    return path, brain


def test_a_head_that_is_not_skull_stripped_is_refused_with_the_fix(tmp_path, tiny_ckpt):
    path, brain = _phantom_head(tmp_path)
    code, err, dest = infer(tmp_path, tiny_ckpt, path)
    assert code == 1 and len(err) == 1, err
    assert str(path) in err[0] and "looks like a whole head" in err[0] and "_brainmask.nii.gz" in err[0]
    assert not list(dest.glob("*.nii.gz"))
    # the fix the message names: a brain mask beside it; the mask then stays inside the brain
    ref = nib.load(path)
    nib.save(nib.Nifti1Image(brain.astype(np.uint8), ref.affine), str(path.parent / "head_brainmask.nii.gz"))
    code, err, dest = infer(tmp_path, tiny_ckpt, path, out="masked")
    assert code == 0, err
    mask = np.asarray(nib.load(dest / "head_anomaly_mask.nii.gz").dataobj) > 0
    assert not (mask & ~brain).any()
    # or the user's word that it is stripped
    (path.parent / "head_brainmask.nii.gz").unlink()
    code, err, _ = infer(tmp_path, tiny_ckpt, path, out="assumed", extra=["--assume-skull-stripped"])
    assert code == 0, err


@pytest.mark.brats
@pytest.mark.slow
def test_no_real_dev_volume_is_taken_for_a_head(brats_root):
    """Every modality of every dev case passes the skull-stripping check (no false alarm)."""
    from monai.transforms import LoadImage

    from monai_adiff.transforms import SkullStrippedCheck, StandardizeBackground

    load, check = LoadImage(ensure_channel_first=True, image_only=True), SkullStrippedCheck()
    files = sorted(p for p in Path(brats_root).glob("*/*.nii.gz") if not p.name.endswith("_seg.nii.gz"))
    assert len(files) >= 40
    for f in files:
        check(StandardizeBackground()(load(str(f))))
