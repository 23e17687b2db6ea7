"""The demo (`python demo.py`) in a shortened form: every stage runs and leaves its files; the
contact sheet is a grid of equal cells under one header."""

import json
import os
from pathlib import Path

import pytest
import torch
from PIL import Image

import demo
import scoring
from load_sam_weights import load_sam, load_sama, read_checkpoint, read_sama_checkpoint
from miniature import recipe, synthetic

# the shortened demo's scores, made with the pinned versions (requirements.txt) on this project's
# 2-core x86-64 machine; after moving a pin, regenerate with
# SAMA_WRITE_DEMO_REFERENCE=1 python -m pytest tests/test_demo.py -k end_to_end
REFERENCE = Path(__file__).with_name("demo_reference.json")
# How far these scores move with the processor: each x86 processor runs CPU kernels of its own
# (PyTorch's vectorised ones, oneDNN's, MKL's), which round differently. Measured against REFERENCE
# on a 2-core AMD EPYC (AVX-512), under ATEN_CPU_CAPABILITY=avx512 (native) / avx2 / default, each
# also with MKL_CBWR=COMPATIBLE (MKL's code path of another processor), the largest relative
# difference over all scores and settings was
#   SAM and the shipped SAMA (inference alone):          6.5e-5 (MKL_CBWR; 4.4e-7 without it)
#   the live SAMA (two training steps, then inference):  1.5e-3 (its FN and mBIoU)
# A few training steps carry the kernels' rounding into every later number, so the live run's
# scores are compared more loosely; each tolerance is 4.6x (6.7x) the largest spread. No
# setting makes the live run identical across them (default + MKL_CBWR and avx2 + MKL_CBWR differ
# too). .ci/run also runs this test under ATEN_CPU_CAPABILITY=default: a tolerance too tight fails
# in CI on any processor.
INFERENCE_REL = 3e-4
TRAINED_REL = 1e-2

# a small benchmark that still holds the thin structures and the mattes the contact sheet shows
SMALL = {name: 3 for name in synthetic.COUNTS}
SMALL.update({"DIS-TE1": max(demo.SHEET_THIN) + 1, "matting/test-fg": max(demo.SHEET_MATTES) + 1,
              "DIS-TR": recipe.RECIPE["batch_size"],  # one batch of the live run
              "matting/train-fg": recipe.RECIPE["batch_size"]})


def test_the_shipped_sama_is_trained_on_the_shipped_sam():
    header = read_sama_checkpoint(demo.SHIPPED_SAMA)
    assert header["tasks"] == ["seg", "matting"]
    # mvle_attention: read as True from a checkpoint saved before the switch existed
    assert header["config"] == {"variant": "tiny", "use_mvle": True, "use_local_adapter": True,
                                "mvle_attention": True}
    sama = load_sama(demo.SHIPPED_SAMA, recipe.STANDIN_SAM)  # refuses other SAM weights
    sam = load_sam(recipe.STANDIN_SAM)
    assert all(torch.equal(a, b) for a, b in zip(sama.sam.state_dict().values(),
                                                 sam.state_dict().values()))
    assert demo.SHIPPED_SAMA.stat().st_size <= 2**20
    # it names its SAM file, not a folder of the machine it was made on: found in weights/
    assert header["sam"]["file"] == "sam_standin.pth"
    assert load_sama(demo.SHIPPED_SAMA).checkpoint_record.sam.file == str(recipe.STANDIN_SAM)


def test_demo_runs_end_to_end_in_short(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(synthetic, "COUNTS", SMALL)
    out = tmp_path / "demo"
    assert demo.main(["--out", str(out), "--steps", "2", "--limit", "2"]) == 0
    printed = capsys.readouterr().out
    shipped = f"SAMA shipped ({recipe.SHIPPED_RECIPE['steps']} steps)"
    for row in ("SAM (stand-in)", shipped, "SAMA live (2 steps)"):
        assert row in printed
    assert "thin structures (DIS-TE1)" in printed and "matting test" in printed
    for name in ("maxF (soft)↑", "MAE (soft)↓", "MAE (binary)↓", "mIoU (binary)↑"):
        assert name in printed  # every score names the map it reads

    for run in ("SAM", "shipped", "live-seed0-2steps"):
        for split, keys in (("DIS-TE1", set(demo.THIN_KEYS)),
                            ("Composition-1K", {"SAD", "MSE"})):
            scores = json.loads((out / "eval" / f"{run}-{split}" / "metrics.json").read_text())
            assert scores["scores"]["n"] == 2
            assert keys <= set(scores["scores"])
            assert all(scores["scores"][k] == scores["scores"][k] for k in keys)  # no NaN
    assert read_sama_checkpoint(out / "sama-live-seed0-2steps" / "sama.pt")["tasks"] == ["seg",
                                                                                    "matting"]

    # the same scores as the pinned versions gave: a drift of numpy, pillow, scipy or torch (image
    # decoding, resizing, augmentation, training) fails here rather than in a reader's table
    printed_scores = {f"{tag}-{split}": json.loads(
        (out / "eval" / f"{run}-{split}" / "metrics.json").read_text())["scores"]
        for tag, run in (("SAM", "SAM"), ("shipped", "shipped"), ("live", "live-seed0-2steps"))
        for split in ("DIS-TE1", "Composition-1K")}
    if os.environ.get("SAMA_WRITE_DEMO_REFERENCE") == "1":
        REFERENCE.write_text(json.dumps(printed_scores, indent=2, sort_keys=True) + "\n")
    reference = json.loads(REFERENCE.read_text())
    assert printed_scores.keys() == reference.keys()
    for name, scores in reference.items():
        assert printed_scores[name].keys() == scores.keys(), name
        rel = TRAINED_REL if name.startswith("live-") else INFERENCE_REL
        for key, value in scores.items():
            expected = value if isinstance(value, str) else pytest.approx(value, rel=rel)
            assert printed_scores[name][key] == expected, (name, key)

    # eight thin structures and three mattes, six columns of equal cells under one header row
    sheet = Image.open(out / "contact_sheet.png")
    step = scoring.VIS_CELL + 4
    rows = len(demo.SHEET_THIN) + len(demo.SHEET_MATTES)
    assert sheet.size == (len(scoring.VIS_COLUMNS) * step - 4,
                          scoring.VIS_HEADER + rows * step)


def test_a_rerun_trains_nothing_again_and_another_length_trains_beside_it(tmp_path, capsys,
                                                                          monkeypatch):
    """The live runs, with evaluate.py's scoring left out (a stand-in that records the folders
    it is asked to score; the scores themselves: the test above)."""
    monkeypatch.setattr(synthetic, "COUNTS", SMALL)
    scored = []

    def scores_stand_in(model, split, option, root, dest, limit):
        scored.append(dest.name)
        return {key: 0.0 for key in (*demo.THIN_KEYS, "SAD", "MSE")}

    monkeypatch.setattr(demo, "scores", scores_stand_in)
    out = tmp_path / "demo"
    assert demo.main(["--out", str(out), "--steps", "2", "--limit", "2"]) == 0
    before = (out / "sama-live-seed0-2steps" / "sama.pt").read_bytes()
    # a second run trains nothing again (the finished live run is kept)
    assert demo.main(["--out", str(out), "--steps", "2", "--limit", "2"]) == 0
    assert (out / "sama-live-seed0-2steps" / "sama.pt").read_bytes() == before

    # another --steps: a run of its own beside the first, scored into folders of its own (issue 22:
    # it ended on the first run's forced --resume)
    scored.clear()
    assert demo.main(["--out", str(out), "--steps", "1", "--limit", "2"]) == 0
    assert "SAMA live (1 steps)" in capsys.readouterr().out
    assert (out / "sama-live-seed0-2steps" / "sama.pt").read_bytes() == before
    assert read_checkpoint(out / "sama-live-seed0-1steps" / "last.pt")["step"] == 1
    assert "live-seed0-1steps-DIS-TE1" in scored and "live-seed0-2steps-DIS-TE1" not in scored


@pytest.mark.parametrize("argv", [["--steps", "0"], ["--limit", "-1"]])
def test_bad_options_are_refused(tmp_path, argv, capsys):
    assert demo.main(["--out", str(tmp_path / "d"), *argv]) == 2
    assert capsys.readouterr().err.startswith("error: --")
    assert not (tmp_path / "d").exists()
