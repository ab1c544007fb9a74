# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

from monai_adiff.engines import latest_checkpoint


def test_latest_checkpoint(tmp_path):
    assert latest_checkpoint(str(tmp_path)) is None
    for name in (
        "checkpoint_epoch=2.pt",
        "checkpoint_epoch=10.pt",
        "checkpoint_epoch=9.pt",
        "model.pt",
        "checkpoint_final.pt",
        "other_epoch=99.pt",
    ):
        (tmp_path / name).write_bytes(b"")
    assert latest_checkpoint(str(tmp_path)).endswith("checkpoint_epoch=10.pt")  # numeric, not lexical, order
    assert latest_checkpoint(str(tmp_path), prefix="other").endswith("other_epoch=99.pt")
    assert latest_checkpoint(str(tmp_path / "missing")) is None
