"""Tests for ablate.py: `--quick` trains and scores every configuration end to end and writes the
table, the contrasts and the figure; a finished run is reused, one made with other settings stops
the study; the table's statistics and SAMA's margins by hand; the per-kind breakdown by hand; the
fitted bounds on hand-drawn lines whose answer is known."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

import readers
from metrics import mask_iou, seg_scores
from miniature import ablate, stats, synthetic

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
        for thin in ("thin", "thin-heldout"):  # the held-out kinds scored by the same rules
            # result.json's scores, and F^w, S-measure, E-measure from the saved evaluation
            assert set(r["scores"][thin]) == {"maxF", "MAE", "MAE_binary", "FP", "FN", "mIoU",
                                              "mBIoU", "wF", "Sm", "meanEm"}
        assert r["settings"]["scoring"] == ablate.SCORING
        assert set(r["scores"]["matting"]) == set(r["scores"]["matting-heldout"]) == {"SAD", "MSE"}
        assert all(v == v for test in r["scores"].values() for v in test.values())  # no NaN
        trained = r["configuration"] != "SAM"
        assert (r["validation"] is not None) == trained
    table = (study / "ablation.md").read_text()
    for config in ablate.CONFIGURATIONS:
        assert f"| {config.label} |" in table
    assert "0.942 (Table 1)" in table and "0.872 (Table 3)" in table  # the paper's DIS-VD maxF
    assert "19.79 (Table 4)" in table and "34.25 (Table 5)" in table
    assert "python -m miniature.ablate --quick" in table
    assert ("| maxF (soft)↑ | wF (soft)↑ | MAE (soft)↓ | Sm (soft)↑ | meanEm (soft)↑ | "
            "MAE (binary)↓ | FP (binary)↓ |") in table
    assert "0.885 (Table 1)" in table and "0.912 (Table 3)" in table  # the paper's wF and Sm
    # result.json, which decides reuse, keeps the scores the runs wrote
    saved = json.loads((study / "runs" / "SAMA-seed0" / "result.json").read_text())
    assert "wF" not in saved["scores"]["thin"]
    sama = next(r for r in results if r["configuration"] == "SAMA")
    metrics = json.loads((study / "eval" / "SAMA-seed0-DIS-TE1" / "metrics.json").read_text())
    assert sama["scores"]["thin"]["Sm"] == metrics["scores"]["Sm"]
    # every contrast of the paper, each score with its interval and verdict
    found = json.loads((study / "results.json").read_text())["contrasts"]
    # (and the same on the held-out kinds, in a table of their own below the first)
    assert len(found) == 2 * len(ablate.CONTRASTS) * len(ablate.CONTRAST_KEYS)
    for c in found:
        assert c["low"] <= c["high"] and c["verdict"] in stats.VERDICTS
    seen, heldout = table.split("The same contrasts on the held-out kinds:")
    assert "| SAMA (MVLE + Local-Adapter, joint training) |" in seen.split("Held-out kinds")[1]
    for part in (seen, heldout):
        for a, b, _ in ablate.CONTRASTS:
            row = next(line for line in part.splitlines() if line.startswith(f"| {a} - {b} |"))
            assert sum(row.count(v) for v in ("] supported", "] not supported", "] reversed")) \
                == len(ablate.CONTRAST_KEYS)
    # the SAMA - SAM interval from the two runs' per-image scores, as stats.py computes it, on the
    # test split and on the held-out kinds (their own folders)
    for test, split in (("thin", "DIS-TE1"), ("thin-heldout", "heldout-DIS-TE1")):
        c = next(c for c in found if (c["a"], c["b"], c["test"], c["key"])
                 == ("SAMA", "SAM", test, "mBIoU"))
        per_image = [json.loads((study / "eval" / f"{run}-{split}" / "per_image.json")
                                .read_text()) for run in ("SAMA-seed0", "SAM")]
        assert {k: c[k] for k in ("diff", "low", "high")} == stats.paired_bootstrap(
            [per_image[0]["scores"]["mBIoU"]], [per_image[1]["scores"]["mBIoU"]])
    # the matting split's units: a foreground with its composites
    c = next(c for c in found if (c["a"], c["b"], c["test"], c["key"])
             == ("SAMA", "SAM", "matting", "SAD"))
    per_image = [json.loads((study / "eval" / f"{run}-Composition-1K" / "per_image.json")
                            .read_text()) for run in ("SAMA-seed0", "SAM")]
    units = [stem.rsplit("_", 1)[0] for stem in per_image[0]["stems"]]
    assert len(set(units)) < len(units)  # several composites of one foreground
    assert {k: c[k] for k in ("diff", "low", "high")} == stats.paired_bootstrap(
        [per_image[0]["scores"]["SAD"]], [per_image[1]["scores"]["SAD"]], clusters=units)
    # the claims' verdicts and Table 3's order under both readings, and the threshold picks
    claims = table.split("## Claim by claim")[1]
    for a, b, _ in ablate.CONTRASTS:
        assert f"| {ablate.CLAIMS[a, b]} | {a} - {b} |" in claims
    for reading in ablate.READINGS:
        assert f"| {reading} | thin | maxF (soft) |" in table
    assert "Threshold picks (validation's mIoU over 0.1, 0.2" in table
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
    assert "`python -m miniature.ablate --per-kind` at commit" in lines[2]
    split = lines.index(next(line for line in lines if line.startswith("The mattes' SAD")))
    table, by_alpha = lines[4:split - 1], lines[split + 2:]
    assert table[0].startswith("| configuration | all MAE (soft) | all MAE (binary) | "
                               "all FP (binary) | all FN (binary) | lines IoU (binary) |")
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ")[1:] for line in table[2:]}
    assert sorted(rows) == sorted([c.name for c in ablate.CONFIGURATIONS]
                                  + ["reachable at 8G (fitted)", "reachable at 4G (fitted)"])
    # SAM's "lines" cells by hand: DIS-TE1_0000 is the split's only image of that kind here
    gt = readers.load_mask(study / "bench" / "DIS5K" / "DIS-TE1" / "gt" / "DIS-TE1_0000.png") > 128
    mask = np.asarray(Image.open(study / "eval" / "SAM-DIS-TE1" / "mask" / "DIS-TE1_0000.png"))
    assert float(rows["SAM"][4]) == pytest.approx(mask_iou(mask >= 128, gt), abs=6e-4)
    assert float(rows["SAM"][5]) == pytest.approx((mask >= 128).sum() / gt.sum(), abs=6e-3)
    # the whole split: the soft MAE reads SAM's probability map, the binary MAE its mask (FP + FN)
    soft, binary, fp, fn = (float(v) for v in rows["SAM"][:4])
    assert binary == pytest.approx(fp + fn, abs=2e-4) and fp + fn > 0
    maes = []
    for gt_path in sorted((study / "bench" / "DIS5K" / "DIS-TE1" / "gt").glob("*.png")):
        pred = np.asarray(Image.open(study / "eval" / "SAM-DIS-TE1" / "pred" / gt_path.name))
        assert len(np.unique(pred)) > 2  # SAM's probability map
        maes.append(seg_scores(pred, readers.load_mask(gt_path) > 128)["MAE"])
    assert soft == pytest.approx(np.mean(maes), abs=6e-5) and soft != pytest.approx(binary)
    # the held-out kinds' columns come last, marked, after the seen kinds' (truss after rings,
    # animal after the seen mattes)
    header = table[0].split(" | ")[1:]
    held = [name for name in header if "(held out)" in name]
    assert held == ["truss (held out) IoU (binary)", "truss (held out) area (binary)",
                    "animal (held out) SAD |"]
    assert header.index("rings IoU (binary)") < header.index(held[0])
    # SAM's truss IoU by hand: the mean over the held-out split's 3 images, every one a truss
    ious = []
    for name in ("DIS-TE1_0000.png", "DIS-TE1_0001.png", "DIS-TE1_0002.png"):
        mask = np.asarray(Image.open(study / "eval" / "SAM-heldout-DIS-TE1" / "mask" / name))
        gt = readers.load_mask(study / "bench" / "heldout" / "DIS5K" / "DIS-TE1" / "gt" / name)
        ious.append(mask_iou(mask >= 128, gt > 128))
    assert float(rows["SAM"][header.index(held[0])]) == pytest.approx(np.mean(ious), abs=6e-4)
    # the held-out mattes' SAD by the GT's alpha: SAM's by hand, and the three parts sum to the
    # animal's SAD (the held-out split's only kind)
    assert by_alpha[0] == ("| configuration | seen kinds SAD (opaque) | seen kinds SAD (partial) | "
                           "seen kinds SAD (clear) | held-out kinds SAD (opaque) | held-out kinds "
                           "SAD (partial) | held-out kinds SAD (clear) |")
    parts = {line.split(" | ")[0].lstrip("| "): [float(v.strip(" |")) for v in
                                                 line.split(" | ")[1:]] for line in by_alpha[2:]}
    assert sorted(parts) == sorted(rows)
    bench = study / "bench" / "heldout" / "AIM"
    opaque = []
    for files in readers.composition1k_pairs(bench)[:ablate.QUICK_IMAGES]:
        gt = readers.load_mask(files[1])
        region = readers.load_mask(files[2]) == 128
        name = files[1].stem + ".png"
        pred = np.asarray(Image.open(study / "eval" / "SAM-heldout-Composition-1K" / "pred" / name))
        opaque.append(np.abs(pred / 255.0 - gt / 255.0)[region & (gt == 255)].sum() / 1000)
    assert parts["SAM"][3] == pytest.approx(np.mean(opaque), abs=6e-3) and parts["SAM"][3] > 0
    for row, values in parts.items():
        animal = float(rows[row][header.index(held[2])].strip(" |"))
        assert sum(values[3:]) == pytest.approx(animal, abs=0.02)
    # the bounds: every kind's IoU reached at least as well at 8G as at 4G
    ious = [k for k, name in enumerate(header) if name.endswith("IoU (binary)")]
    assert len(ious) == 4  # lines, mesh and rings in this small split, and the held-out truss
    for k in ious:
        assert float(rows["reachable at 8G (fitted)"][k]) >= float(
            rows["reachable at 4G (fitted)"][k]) - 0.02


def test_the_fit_upsamples_as_the_predictors_do():
    from sam import postprocess_masks, preprocess_shape
    torch.manual_seed(0)
    for side, h, w in ((64, 200, 150), (128, 177, 319)):
        rows, cols = ablate.upsampling_matrices(side, h, w)
        grid = torch.randn(side, side)
        expected = postprocess_masks(grid[None, None], ablate.STANDIN_FRAME,
                                     preprocess_shape(h, w, ablate.STANDIN_FRAME), (h, w))[0, 0]
        torch.testing.assert_close(rows @ grid @ cols.T, expected, atol=1e-5, rtol=0)


def test_a_line_whole_cells_wide_is_reached_exactly():
    """On the 4G grid (4 px cells on the 256 px frame), lines 1 and 2 cells wide on the cells:
    logits +L on the line's cells, -L elsewhere, up-sampled bilinearly, change sign exactly at the
    cells' borders."""
    for columns, rows in ((slice(64, 72), slice(None)), (slice(None), slice(100, 104))):
        gt = np.zeros((256, 192), np.uint8)
        gt[rows, columns] = 255
        soft, mask = ablate.fitted_bound(gt, 64)
        assert mask_iou(mask, gt > 128) == 1.0
        assert soft.dtype == np.uint8 and np.abs(soft / 255 - gt / 255).max() < 0.5


def test_a_one_pixel_line_at_4g():
    """A 1 px column at the four phases of a 4 px cell: bilinear logits are linear between cell
    centres, so a pixel 1/8 cell from a centre can be the only positive one (IoU 1), one 3/8 cell
    from it cannot be without its neighbour (IoU 1/2 at best). The GT averaged onto the grid and
    thresholded (the study's former "through grid" rows) loses the line: IoU 0."""
    found = []
    for column in range(64, 68):
        gt = np.zeros((64, 256), np.uint8)
        gt[:, column] = 255
        found.append(mask_iou(ablate.fitted_bound(gt, 64)[1], gt > 128))
    assert found == [0.5, 1.0, 1.0, 0.5]


def test_a_matte_bound_fits_the_unknown_region():
    """An alpha the grid can hold exactly (constant 0.3 in the unknown band) is reached."""
    alpha = np.zeros((200, 160), np.uint8)
    alpha[50:150, 40:120] = 77
    region = np.zeros(alpha.shape, bool)
    region[60:140, 50:110] = True
    pred, same = ablate.fitted_bound(alpha, 64, region)
    assert pred is same and np.abs(pred[region].astype(int) - 77).max() <= 1


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
    thin = {k: scores.get(k, 0.0) for k in ablate.TESTS["thin"][3]}
    return {"configuration": config, "seed": seed,
            "scores": {"thin": thin, "matting": {"SAD": scores.get("SAD", 0.0), "MSE": 0.0}}}


def test_summary_and_margins_by_hand():
    results = [_result("SAM", None, maxF=0.5, MAE=0.1, MAE_binary=0.1, mBIoU=0.2, SAD=5.0),
               _result("SAMA", 0, maxF=0.6, MAE=0.08, MAE_binary=0.11, mBIoU=0.3, SAD=4.0),
               _result("SAMA", 1, maxF=0.8, MAE=0.12, MAE_binary=0.07, mBIoU=0.1, SAD=6.0)]
    stats = ablate.summary(results)
    mean, spread, values = stats["SAMA"]["maxF"]
    assert values == [0.6, 0.8]
    assert mean == pytest.approx(0.7)
    assert spread == pytest.approx(0.1414213562)  # sample standard deviation: sqrt(0.02)
    assert stats["SAM"]["maxF"] == (0.5, 0.0, [0.5])
    first, second = ablate.margins(results)
    # positive = SAMA better: higher maxF / mBIoU, lower MAE / SAD
    assert first == pytest.approx({"seed": 0, "mBIoU": 0.1, "maxF": 0.1, "MAE": 0.02,
                                   "MAE_binary": -0.01, "SAD": 1.0})
    assert second == pytest.approx({"seed": 1, "mBIoU": -0.1, "maxF": 0.3, "MAE": -0.02,
                                    "MAE_binary": 0.03, "SAD": -1.0})


def test_the_papers_direction_is_read_from_its_numbers():
    """paper_direction agrees with every number of the paper's tables that scoring.PAPER holds for
    both configurations of a contrast; A is the paper's better on every score in every contrast
    but the Local-Adapter alone against MVLE alone (Table 3: above on maxF, F^w, S-measure and
    E-measure, below on MAE; Table 4: above on SAD)."""
    import scoring
    config = {c.name: c.paper for c in ablate.CONFIGURATIONS}
    compared = 0
    for a, b, _ in ablate.CONTRASTS:
        for rows in scoring.PAPER.values():
            first = next((r for r in rows if r["config"] == config[a]), None)
            second = next((r for r in rows if r["config"] == config[b]), None)
            if first is None or second is None:
                continue
            for key, value in first["scores"].items():
                lower = key in ablate.LOWER_IS_BETTER
                a_better = (value < second["scores"][key]) if lower else (
                    value > second["scores"][key])
                assert a_better == (b != "MVLE-only" or a == "SAMA" or key != "MAE")
                compared += 1
    assert compared >= 20
    for a in ("LA-only", "LA-only-views"):
        for key in ("maxF", "wF", "Sm", "meanEm", "mIoU", "mBIoU"):
            assert ablate.paper_direction(a, "MVLE-only", key)[0] is True
        for key in ("MAE", "MAE_binary"):  # 0.029 against 0.027: A - B above zero
            assert ablate.paper_direction(a, "MVLE-only", key) == (True, "DIS-VD MAE (Table 3)")
        assert ablate.paper_direction(a, "MVLE-only", "SAD") == (False, "AM-2K SAD (Table 4)")
    # no paper number for SAM's matte: A better
    assert ablate.paper_direction("SAMA", "SAM", "SAD")[0] is False
    assert ablate.paper_direction("SAMA", "seg-only", "SAD") == (
        False, "RefMatte-RW100 SAD (Table 5)")


def test_every_claim_has_its_contrast_and_its_verdicts_are_grouped():
    assert set(ablate.CLAIMS) == {(a, b) for a, b, _ in ablate.CONTRASTS}
    found = [{"a": "LA-only", "b": "MVLE-only", "test": test, "key": key, "verdict": verdict}
             for test, key, verdict in (("thin", "maxF", "reversed"), ("thin", "MAE", "supported"),
                                        ("thin", "wF", "reversed"), ("matting", "SAD",
                                                                     "not supported"))]
    assert ablate._verdict_cell(found, "LA-only", "MVLE-only", "thin") == (
        "supported: MAE (soft); reversed: maxF (soft), wF (soft)")
    assert ablate._verdict_cell(found, "LA-only", "MVLE-only", "matting") == "not supported: SAD"


def test_matting_units_are_foregrounds_and_thin_units_images():
    stems = ["test_0000_0", "test_0000_1", "test_0001_0", "test_0012_3"]
    assert ablate.clusters("matting", stems) == ["test_0000", "test_0000", "test_0001",
                                                 "test_0012"]
    assert ablate.clusters("matting-heldout", ["a_b_2"]) == ["a_b"]
    assert ablate.clusters("thin", ["DIS-TE1_0000"]) is None


def _validated(config: str, seed: int, threshold: float) -> dict:
    return {"configuration": config, "seed": seed, "validation": {"val_threshold": threshold}}


def test_a_threshold_pick_at_the_grids_edge_is_named():
    grid = (0.1, 0.2, 0.3, 0.4, 0.5)
    inside = [_validated("SAMA", 0, 0.3), _validated("SAMA", 1, 0.2),
              {"configuration": "SAM", "seed": None, "validation": None}]
    assert ablate.threshold_picks(inside, grid) == ({"SAMA-seed0": 0.3, "SAMA-seed1": 0.2}, [])
    assert ablate.threshold_line(inside, grid).endswith("0.2 (1 runs), 0.3 (1 runs); all 2 "
                                                        "inside the grid.")
    edge = inside + [_validated("LA-only", 2, 0.1), _validated("neither", 0, 0.5),
                     _validated("MVLE-only", 0, 0.7)]
    picks, flagged = ablate.threshold_picks(edge, grid)
    assert flagged == ["LA-only-seed2", "neither-seed0", "MVLE-only-seed0"]
    line = ablate.threshold_line(edge, grid)
    assert "WARNING: 3 of 5 at the grid's edge or off it" in line
    assert line.endswith("LA-only-seed2, neither-seed0, MVLE-only-seed0.")


def test_the_committed_studys_threshold_picks_lie_inside_its_grid():
    """The committed study's runs picked their mask threshold strictly inside the grid they chose
    from (results.json records it since the grid was widened; an older study is skipped)."""
    from pathlib import Path
    committed = json.loads((Path(ablate.__file__).parent / "ablation" / "results.json")
                           .read_text())
    if "threshold_grid" not in committed:
        pytest.skip("the committed study predates the recorded threshold grid")
    picks, edge = ablate.threshold_picks(committed["results"], committed["threshold_grid"])
    assert picks and edge == []


@pytest.mark.parametrize("option", [["--seeds", "4"], ["--jobs", "1"], ["--quick"]])
def test_per_kind_beside_an_option_of_the_study_is_refused(option, tmp_path, capsys):
    assert ablate.main(["--per-kind", *option, "--out", str(tmp_path / "study")]) == 2
    assert capsys.readouterr().err == (f"error: {option[0]}: --per-kind scores the study already "
                                       f"in --out; leave it out\n")
    assert not (tmp_path / "study").exists()
