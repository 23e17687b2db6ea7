"""The reader of Table 5's RefMatte-RW100 on a small tree in its official layout (image / mask /
label tree), its one-line errors, and evaluate.py end to end on it."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import data
import evaluate
from data import DataError
from load_sam_weights import load_sam, sam_identity, save_sama
from metrics import MattingMetrics
from sam import SAM_VARIANTS, Sam
from sama import SAMA, TASKS

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.torch_threads

def save(array: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def matte(h: int, w: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A textured foreground (h, w, 3) and the alpha of a soft-edged disc (h, w): 255 inside, 0
    outside, a 4-pixel ramp between."""
    rng = np.random.default_rng(seed)
    fg = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    y, x = np.mgrid[0:h, 0:w]
    d = np.hypot(y - h / 2, x - w / 2)
    alpha = np.clip((0.35 * min(h, w) - d) / 4 + 0.5, 0, 1)
    return fg, np.round(255 * alpha).astype(np.uint8)


def one_line(error: pytest.ExceptionInfo, *fragments: str) -> str:
    msg = str(error.value)
    assert "\n" not in msg, msg
    for fragment in fragments:
        assert fragment in msg, f"{fragment!r} not in {msg!r}"
    return msg


# ----------------------------------------------------------------------------------------------
# RefMatte-RW100: {image_all, mask} + refmatte_rw100_label.json
# ----------------------------------------------------------------------------------------------

REFMATTE_STEMS = ["photo_1_0", "photo_1_1", "photo_2_0"]  # two objects of photo_1, one of photo_2


def write_refmatte(root: Path) -> Path:
    """RefMatte_RW_100 as distributed: one image per labelled object in image_all, its alpha in
    mask, and the labels keyed by the same stems."""
    rw = root / "RefMatte_RW_100"
    labels = {}
    for k, stem in enumerate(REFMATTE_STEMS):
        fg, alpha = matte(44, 60, seed=10 + k)
        background = np.random.default_rng(20 + k).integers(0, 256, fg.shape, dtype=np.uint8)
        save(data.composite(fg, alpha, background), rw / "image_all" / f"{stem}.jpg")
        save(alpha, rw / "mask" / f"{stem}.png")
        labels[stem] = {"image_name": stem.rsplit("_", 1)[0], "expressions": [f"object number {k}"]}
    (rw / data.REFMATTE_LABELS).write_text(json.dumps(labels))
    return rw


def test_refmatte_reader(tmp_path):
    rw = write_refmatte(tmp_path)
    pairs = data.refmatte_rw100_pairs(rw)
    names = [(image.name, mask.name) for image, mask in pairs]
    assert names == [(f"{s}.jpg", f"{s}.png") for s in REFMATTE_STEMS]
    assert data.refmatte_rw100_pairs(tmp_path) == pairs  # the folder holding it works too
    assert data.main(["check", "refmatte", str(rw)]) == 0


@pytest.mark.parametrize("breakage", ["no labels", "not json", "a list", "missing entry",
                                      "extra entry", "missing mask"])
def test_refmatte_broken_tree_is_one_line(tmp_path, breakage):
    rw = write_refmatte(tmp_path)
    labels_path = rw / data.REFMATTE_LABELS
    labels = json.loads(labels_path.read_text())
    if breakage == "no labels":
        labels_path.unlink()
        fragments = (str(rw), data.REFMATTE_LABELS, "RefMatte_RW_100/{image_all,mask,")
    elif breakage == "not json":
        labels_path.write_text('{"photo_1_0": ')
        fragments = (str(labels_path), "not readable JSON")
    elif breakage == "a list":
        labels_path.write_text(json.dumps(list(labels)))
        fragments = (str(labels_path), "JSON list")
    elif breakage == "missing entry":
        del labels["photo_1_1"]
        labels_path.write_text(json.dumps(labels))
        fragments = (str(rw / "mask" / "photo_1_1.png"), "no entry 'photo_1_1'")
    elif breakage == "extra entry":
        labels["photo_3_0"] = {"image_name": "photo_3", "expressions": ["a third one"]}
        labels_path.write_text(json.dumps(labels))
        fragments = (str(labels_path), "'photo_3_0'", "no image_all / mask pair")
    else:
        (rw / "mask" / "photo_2_0.png").unlink()
        fragments = ("photo_2_0.jpg", "no file named photo_2_0.*", "mask")
    with pytest.raises(DataError) as e:
        data.refmatte_rw100_pairs(rw)
    one_line(e, *fragments)


# ----------------------------------------------------------------------------------------------
# evaluate.py end to end (a random tiny SAMA)
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    sam_path, sama_path = folder / "sam_tiny.pth", folder / "sama.pt"
    torch.save(Sam(SAM_VARIANTS["tiny"]).state_dict(), sam_path)
    save_sama(SAMA(load_sam(sam_path)), sama_path, sam_identity(sam_path, "tiny"), TASKS)
    return sama_path


def run(*argv) -> int:
    return evaluate.main([*map(str, argv), "--no-progress"])


def test_evaluate_refmatte_rw100_end_to_end(checkpoint, tmp_path):
    rw = write_refmatte(tmp_path)
    out = tmp_path / "eval"
    assert run("--split", "RefMatte-RW100", "--refmatte", rw, "--checkpoint", checkpoint,
               "--out", out) == 0
    direct = MattingMetrics()
    for _, alpha_path in data.refmatte_rw100_pairs(rw):
        pred = data.load_mask(out / "pred" / f"{alpha_path.stem}.png")
        direct.update(pred, data.load_mask(alpha_path))
    report = json.loads((out / "metrics.json").read_text())
    assert report["scores"] == direct.results() and report["scores"]["region"] == "whole image"
    assert report["scores"]["n"] == len(REFMATTE_STEMS) and "alpha > 0" in report["prompt"]
    md = (out / "results.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| paper:") and "Table 5" in line]
    assert len(rows) == 3
    expected = {"segmentation only": ("62.7", "54"), "matting only": ("34.25", "21"),
                "both tasks": ("25.69", "10")}
    for words, (sad, mse) in expected.items():
        row = next(r for r in rows if words in r)
        assert f"| {sad} | {mse} |" in row, row
    marked = [r for r in rows if "(same configuration as ours)" in r]
    assert len(marked) == 1 and "both tasks" in marked[0]
    assert "box of its alpha" in md and "whole image" in md
