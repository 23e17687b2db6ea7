"""The shipped stand-in SAM (weights/sam_standin.pth) and its pre-training (pretrain_sam.py): the
official checkpoint format, competence on held-out solid objects, SAM's losses, determinism."""

import hashlib
import json
import math
from pathlib import Path

import pytest
import torch

import evaluate
from load_sam_weights import load_sam, read_checkpoint
from miniature import pretrain_sam, synthetic
from sam import SAM_VARIANTS, Sam

ROOT = Path(__file__).resolve().parents[1]
STANDIN = ROOT / "weights" / "sam_standin.pth"
HELD_OUT_SEED = 7  # neither the shipped benchmark (seed 0) nor the pre-training (seed 0) drew these


@pytest.fixture(scope="module")
def standin() -> Sam:
    return load_sam(STANDIN)


@pytest.fixture(scope="module")
def held_out() -> list:
    """24 solid objects on textured backgrounds, drawn for this test."""
    return [synthetic.solid_pair(HELD_OUT_SEED, "DIS-TE1", i) for i in range(24)]


def test_the_shipped_file_is_an_official_sam_checkpoint(standin):
    assert STANDIN.stat().st_size <= 5 * 2**20
    state = read_checkpoint(STANDIN)  # torch.load(weights_only=True): a plain dict of tensors
    assert set(state) == set(Sam(SAM_VARIANTS["tiny"]).state_dict())  # every SAM key, nothing else
    assert all(v.dtype == torch.float32 for v in state.values())
    assert standin.config == SAM_VARIANTS["tiny"]


def test_the_standin_segments_held_out_solid_objects_and_a_random_sam_does_not(standin, held_out):
    assert pretrain_sam.box_scores(standin, held_out)["mIoU"] >= 0.85
    torch.manual_seed(0)
    assert pretrain_sam.box_scores(Sam(SAM_VARIANTS["tiny"]), held_out)["mIoU"] < 0.5


def test_box_scores_follow_evaluate_py(tmp_path, monkeypatch):
    """The validation protocol of the pre-training equals evaluate.py's "seg" split on the files."""
    monkeypatch.setattr(synthetic, "COUNTS", {name: 4 for name in synthetic.COUNTS})
    root = tmp_path / "bench"
    synthetic.write_benchmark(root, seed=HELD_OUT_SEED)
    out = tmp_path / "eval"
    args = ["--split", "DIS-TE1", "--data", str(root / "solid" / "DIS5K"), "--model", "sam",
            "--sam-checkpoint", str(STANDIN), "--out", str(out), "--no-progress"]
    assert evaluate.main(args) == 0
    scores = json.loads((out / "metrics.json").read_text())["scores"]
    pairs = [synthetic.solid_pair(HELD_OUT_SEED, "DIS-TE1", i) for i in range(scores["n"])]
    ours = pretrain_sam.box_scores(load_sam(STANDIN), pairs)
    assert ours["mIoU"] == pytest.approx(scores["mIoU"], abs=1e-9)
    assert ours["mBIoU"] == pytest.approx(scores["mBIoU"], abs=1e-9)


# ----------------------------------------------------------------------------------------------
# The pre-training's pieces
# ----------------------------------------------------------------------------------------------


def test_mask_loss_by_hand():
    """Logits 0 on a 2 x 2 target [[1, 0], [1, 0]]; a padded third column must not count."""
    logits = torch.zeros(1, 1, 2, 3)
    logits[..., 2] = 50.0
    target = torch.tensor([[[[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]]])
    valid = torch.tensor([[[[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]]]])
    focal = 0.25 * math.log(2)  # every valid pixel: p = 0.5, CE = ln 2, (1 - p_t)^2 = 1/4
    dice = 1 - (2 * 1.0 + 1) / (2.0 + 2.0 + 1)  # sum p = 2, sum g = 2, sum p g = 1
    loss = pretrain_sam.mask_loss(logits, target, valid)
    assert loss.shape == (1, 1)
    assert loss.item() == pytest.approx(20 * focal + dice, rel=1e-6)


def test_actual_iou_by_hand():
    logits = torch.tensor([[[[1.0, -1.0], [1.0, 1.0]]],
                           [[[-1.0, -1.0], [-1.0, -1.0]]]])  # (2, 1, 2, 2)
    target = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]], [[[0.0, 0.0], [0.0, 0.0]]]])
    iou = pretrain_sam.actual_iou(logits, target, torch.ones_like(target))
    assert iou[0, 0].item() == pytest.approx(1 / 3)
    assert iou[1, 0].item() == 1.0  # both empty


def test_pretraining_is_deterministic_and_writes_an_official_checkpoint(tmp_path, monkeypatch,
                                                                        capsys):
    monkeypatch.setattr(pretrain_sam, "BATCH", 2)
    monkeypatch.setattr(pretrain_sam, "VAL_IMAGES", 2)
    paths = [tmp_path / "a.pth", tmp_path / "b.pth"]
    for path in paths:
        assert pretrain_sam.main(["--out", str(path), "--steps", "2", "--log-every", "1"]) == 0
    assert paths[0].read_bytes() == paths[1].read_bytes()
    printed = capsys.readouterr().out
    assert f"sha256 {hashlib.sha256(paths[0].read_bytes()).hexdigest()}" in printed
    trained = load_sam(paths[0])
    torch.manual_seed(0)
    fresh = Sam(SAM_VARIANTS["tiny"])  # the initial weights of seed 0: two steps moved them
    assert not torch.equal(trained.mask_decoder.iou_token.weight,
                           fresh.mask_decoder.iou_token.weight)


def test_make_batch_puts_prompts_in_the_frame():
    batch = pretrain_sam.make_batch(0, 3, 256)
    n = len(batch["kind"])
    assert batch["images"].shape == (pretrain_sam.BATCH, 3, 256, 256)
    assert batch["target"].shape == (n, 1, 256, 256) and batch["mask_input"].shape == (n, 1, 64, 64)
    for k in range(n):  # the first point (positive) lies on the target in the frame
        x, y = batch["points"][k, 0].round().long().tolist()
        assert batch["target"][k, 0, max(0, y - 1):y + 2, max(0, x - 1):x + 2].max() > 0.3
        x0, y0, x1, y1 = batch["box"][k].tolist()
        assert 0 <= x0 <= x1 < 256 and 0 <= y0 <= y1 < 256
    assert set(batch["kind"]) <= set(pretrain_sam.PROMPT_KINDS)
