"""Tests for ablate.py: `--quick` trains and scores every configuration end to end and writes the
table and the figure; a finished run is reused, one made with other settings stops the study;
the table's statistics and SAMA's margins by hand; the per-kind breakdown by hand."""

import json

import numpy as np
import pytest
from PIL import Image

import ablate
import data
import synthetic
from metrics import mask_iou

SMALL = {name: 3 for name in synthetic.COUNTS}  # images per split of the test's benchmark
SMALL["matting/train-fg"] = 4


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("ablation")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(synthetic, "COUNTS", SMALL)
        assert ablate.main(["--quick", "--out", str(out), "--seeds", "0"]) == 0
    return out


def test_quick_runs_every_configuration_and_writes_the_table_and_figure(study):
    results = json.loads((study / "results.json").read_text())["results"]
    assert sorted(r["configuration"] for r in results) == sorted(
        c.name for c in ablate.CONFIGURATIONS)
    for r in results:
        assert set(r["scores"]["thin"]) == {"maxF", "MAE", "mIoU", "mBIoU"}
        assert set(r["scores"]["matting"]) == {"SAD", "MSE"}
        assert all(v == v for test in r["scores"].values() for v in test.values())  # no NaN
        trained = r["configuration"] != "SAM"
        assert (r["validation"] is not None) == trained
    table = (study / "ablation.md").read_text()
    for config in ablate.CONFIGURATIONS:
        assert f"| {config.label} |" in table
    assert "0.942 (Table 1)" in table and "0.872 (Table 3)" in table  # the paper's DIS-VD maxF
    assert "19.79 (Table 4)" in table and "34.25 (Table 5)" in table
    assert "ablate.py --quick" in table
    # the header names the versions the numbers were made with (requirements.txt pins them)
    assert f"numpy {np.__version__}" in table and f"pillow {Image.__version__}" in table
    assert Image.open(study / "ablation.png").size == (2 * ablate.PANEL[0], 2 * ablate.PANEL[1])
    # each configuration's test splits were scored by evaluate.py, with --limit in --quick
    metrics = json.loads((study / "eval" / "SAMA-seed0-DIS-TE1" / "metrics.json").read_text())
    assert metrics["scores"]["n"] == ablate.QUICK_IMAGES - 1  # the split holds 3 images
    assert metrics["config"]["use_mvle"] and metrics["config"]["use_local_adapter"]
    seg_only = json.loads((study / "eval" / "seg-only-seed0-Composition-1K" / "metrics.json")
                          .read_text())
    assert seg_only["config"]["tasks"] == ["seg"]


def test_per_kind_scores_the_predictions_of_each_kind(study, capsys):
    assert ablate.main(["--per-kind", "--out", str(study)]) == 0
    lines = (study / "per_kind.md").read_text().splitlines()
    assert "`python ablate.py --per-kind` at commit" in lines[2]
    table = lines[4:]
    assert table[0].startswith("| configuration | all MAE | all FP | all FN | lines MAE |")
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ")[1:] for line in table[2:]}
    assert sorted(rows) == sorted([c.name for c in ablate.CONFIGURATIONS]
                                  + ["GT through 8G", "GT through 4G"])
    # SAM's "lines" cells by hand: DIS-TE1_0000 is the split's only image of that kind here
    gt = data.load_mask(study / "bench" / "DIS5K" / "DIS-TE1" / "gt" / "DIS-TE1_0000.png")
    pred = np.asarray(Image.open(study / "eval" / "SAM-DIS-TE1" / "pred" / "DIS-TE1_0000.png"))
    mae = np.abs(pred / 255 - (gt > 128)).mean()  # SAM's mask is binary: no min-max rescaling
    assert float(rows["SAM"][3]) == pytest.approx(mae, abs=6e-4)
    assert float(rows["SAM"][4]) == pytest.approx(mask_iou(pred >= 128, gt > 128), abs=6e-4)
    area = (pred >= 128).sum() / (gt > 128).sum()
    assert float(rows["SAM"][5]) == pytest.approx(area, abs=6e-3)
    # the whole split: SAM's mask is binary, so its MAE is FP + FN
    mae, fp, fn = (float(v) for v in rows["SAM"][:3])
    assert mae == pytest.approx(fp + fn, abs=2e-4)
    assert fp + fn > 0


def test_through_grid_by_hand():
    """A vertical edge on a cell boundary of the 8G grid (2 px cells on the 256 px frame): the
    cells average exactly, and bilinear up-sampling blends the two columns beside the edge."""
    gt = np.zeros((256, 256), np.uint8)
    gt[:, :128] = 255
    out = ablate.through_grid(gt, 128)
    assert (out[:, 127] == 191).all() and (out[:, 128] == 64).all()  # round(0.75 * 255), 0.25
    others = np.ones(256, bool)
    others[[127, 128]] = False
    assert (out[:, others] == gt[:, others]).all()
    assert (ablate.through_grid(np.full((200, 150), 255, np.uint8), 64) == 255).all()


def test_per_kind_before_the_study_is_one_line(tmp_path, capsys):
    assert ablate.main(["--per-kind", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1


def test_a_finished_run_is_reused_and_other_settings_stop_the_study(study, capsys):
    log = study / "runs" / "SAMA-seed0" / "commands.log"
    before = log.read_text()
    assert ablate.main(["--quick", "--out", str(study), "--seeds", "0"]) == 0
    assert log.read_text() == before  # nothing trained or scored again

    result = study / "runs" / "neither-seed0" / "result.json"
    saved = json.loads(result.read_text())
    saved["settings"]["recipe"]["steps"] = 999
    result.write_text(json.dumps(saved))
    capsys.readouterr()
    assert ablate.main(["--quick", "--out", str(study), "--seeds", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {result}: made with") and "another --out" in err
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize("argv", [["--jobs", "0"], ["--seeds", "1", "1"], ["--seeds", "-1"]])
def test_bad_options_are_refused_before_any_work(tmp_path, argv, capsys):
    out = tmp_path / "study"
    assert ablate.main(["--quick", "--out", str(out), *argv]) == 2
    assert capsys.readouterr().err.startswith("error: --")
    assert not out.exists()


def _result(config: str, seed, **scores) -> dict:
    thin = {k: scores.get(k, 0.0) for k in ("maxF", "MAE", "mIoU", "mBIoU")}
    return {"configuration": config, "seed": seed,
            "scores": {"thin": thin, "matting": {"SAD": scores.get("SAD", 0.0), "MSE": 0.0}}}


def test_summary_and_margins_by_hand():
    results = [_result("SAM", None, maxF=0.5, MAE=0.1, mBIoU=0.2, SAD=5.0),
               _result("SAMA", 0, maxF=0.6, MAE=0.08, mBIoU=0.3, SAD=4.0),
               _result("SAMA", 1, maxF=0.8, MAE=0.12, mBIoU=0.1, SAD=6.0)]
    stats = ablate.summary(results)
    mean, spread, values = stats["SAMA"]["maxF"]
    assert values == [0.6, 0.8]
    assert mean == pytest.approx(0.7)
    assert spread == pytest.approx(0.1414213562)  # sample standard deviation: sqrt(0.02)
    assert stats["SAM"]["maxF"] == (0.5, 0.0, [0.5])
    first, second = ablate.margins(results)
    # positive = SAMA better: higher maxF / mBIoU, lower MAE / SAD
    assert first == pytest.approx({"seed": 0, "mBIoU": 0.1, "maxF": 0.1, "MAE": 0.02, "SAD": 1.0})
    assert second == pytest.approx({"seed": 1, "mBIoU": -0.1, "maxF": 0.3, "MAE": -0.02,
                                    "SAD": -1.0})
