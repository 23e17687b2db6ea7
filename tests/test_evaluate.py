"""Tests for evaluate.py on a toy tree with a random tiny SAM / SAMA: files, keys, scores equal to
metrics.py run on the written PNGs, --resume, and one-line errors."""

import hashlib
import inspect
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import sama_maps

import data
import evaluate
import outputs
import readers
import scoring
from load_sam_weights import load_sam, load_sama, sam_identity, save_sama
from metrics import MattingMetrics, SegMetrics, boundary_iou, mask_iou
from miniature import synthetic
from predictor import Predictor
from sam import SAM_VARIANTS, Sam, compile_image_encoder
from sama import SAMA, TASKS, SamaPredictor

# the device evaluate.py picks: same numbers
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    """DIS5K / AIM / AIM-500 toy trees, plus COIFT made of the DIS-VD pairs (same layout as the
    release)."""
    root = tmp_path_factory.mktemp("toy")
    synthetic.make_toy(root, seed=1, n_train=1, n_val=3, n_test=1, n_fg=1, n_comp=3, n_aim500=2,
                       n_bg=2)
    for src, dst in (("im", "images"), ("gt", "masks")):
        shutil.copytree(root / "DIS5K" / "DIS-VD" / src, root / "COIFT" / dst)
    return root


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> tuple[Path, Path]:
    """(random tiny SAM as an official-format state dict, SAMA checkpoint built on it)."""
    folder = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    sam_path, sama_path = folder / "sam_tiny.pth", folder / "sama.pt"
    torch.save(Sam(SAM_VARIANTS["tiny"]).state_dict(), sam_path)
    save_sama(SAMA(load_sam(sam_path)), sama_path, sam_identity(sam_path, "tiny"), TASKS)
    return sam_path, sama_path


@pytest.fixture(scope="module")
def single_task(checkpoints, tmp_path_factory) -> dict:
    """SAMA checkpoints recorded as trained for one task: {"seg": path, "matting": path}."""
    sam_path, _ = checkpoints
    folder = sam_path.parent  # beside the SAM file they name
    torch.manual_seed(1)
    model = SAMA(load_sam(sam_path))
    paths = {task: folder / f"sama-{task}.pt" for task in TASKS}
    for task, path in paths.items():
        save_sama(model, path, sam_identity(sam_path, "tiny"), [task])
    return paths


def run(*argv) -> int:
    return evaluate.main([*map(str, argv), "--no-progress"])


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("error: ") and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def dis_run(toy, checkpoints, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("eval") / "dis"
    assert (
        run(
            "--split",
            "DIS-VD",
            "--data",
            toy,
            "--checkpoint",
            checkpoints[1],
            "--out",
            out,
            "--vis",
            2,
        )
        == 0
    )
    return out


def test_dis_files_keys_and_scores_equal_metrics_on_the_pngs(toy, checkpoints, dis_run):
    report = json.loads((dis_run / "metrics.json").read_text())
    for key in (
        "split",
        "model",
        "checkpoint",
        "sam_checkpoint",
        "config",
        "prompt",
        "prediction",
        "scores",
        "paper",
    ):
        assert key in report
    # DIS-VD: the field's scores and its human correction effort
    assert set(report["scores"]) == {*scoring.SEG_KEYS, "HCE", "n"}
    assert report["config"]["model"] == "sama" and "gt > 128" in report["prompt"]
    # the SAM file recorded in sama.pt
    assert report["sam_checkpoint"] == str(checkpoints[0].resolve())

    pairs = readers.dis_pairs(toy, "DIS-VD")
    direct = SegMetrics(hce=True)
    levels = set()
    for _, gt_path in pairs:
        gt = readers.load_mask(gt_path)
        pred = readers.load_mask(dis_run / "pred" / f"{gt_path.stem}.png")
        mask = readers.load_mask(dis_run / "mask" / f"{gt_path.stem}.png")
        assert pred.shape == mask.shape == gt.shape  # written at the GT's resolution
        assert set(np.unique(mask).tolist()) <= {0, 255}
        levels |= set(np.unique(pred).tolist())
        direct.update(pred, gt, mask >= 128)
    assert report["scores"] == direct.results()
    assert report["scores"]["n"] == len(pairs) == 3
    assert len(levels) > 2  # SAMA's probability map, not a binary mask
    assert report["config"]["threshold"] == 0.5  # none recorded in the checkpoint
    per_image = json.loads((dis_run / "per_image.json").read_text())
    assert per_image["stems"] == [gt_path.stem for _, gt_path in pairs]
    assert per_image["scores"] == direct.per_image()

    md = (dis_run / "results.md").read_text()
    assert "Table 1" in md and "0.942" in md and f"{report['scores']['maxF']:.3f}" in md
    assert "| maxF (soft) |" in md and "| MAE (soft) |" in md and "| MAE (binary) |" in md
    assert "| HCE (binary) |" in md and f"| {report['scores']['HCE']:.1f} |" in md
    from PIL import Image
    vis = Image.open(dis_run / "vis.png")
    step = scoring.VIS_CELL + 4  # two rows of six equal cells under one header
    assert vis.size == (6 * step - 4, scoring.VIS_HEADER + 2 * step)


def test_score_segmentation_equals_the_evaluated_split(toy, checkpoints, dis_run):
    parameters = list(inspect.signature(scoring.score_segmentation).parameters)
    assert parameters == ["model", "tasks", "pairs", "progress"]
    model = load_sama(checkpoints[1], device=DEVICE)
    pairs = readers.dis_pairs(toy, "DIS-VD")
    scores = scoring.score_segmentation(model, TASKS, pairs, progress=False)
    report = json.loads((dis_run / "metrics.json").read_text())
    evaluated = {k: v for k, v in report["scores"].items() if k != "HCE"}  # validation's has none
    assert scores == pytest.approx(evaluated, rel=1e-9, abs=1e-12)


def test_compile_gives_the_same_predictions(toy, checkpoints, dis_run, tmp_path, monkeypatch,
                                            capsys):
    """--compile compiles SAM's encoder for SAMA's five views first (its own backend here,
    "eager"; tests/test_cuda.py runs Inductor) and writes the eager run's PNGs."""
    calls = []

    def compile_eagerly(sam_model, views):
        calls.append((sam_model.training, views))
        return compile_image_encoder(sam_model, views, backend="eager")

    monkeypatch.setattr(evaluate, "compile_image_encoder", compile_eagerly)
    out = tmp_path / "compiled"
    capsys.readouterr()
    assert run("--split", "DIS-VD", "--data", toy, "--checkpoint", checkpoints[1], "--out", out,
               "--compile") == 0
    assert "--compile: SAM's image encoder compiled in" in capsys.readouterr().out
    assert calls == [(False, 5)]
    pngs = sorted(p.name for p in (dis_run / "pred").glob("*.png"))
    assert pngs and pngs == sorted(p.name for p in (out / "pred").glob("*.png"))
    for name in pngs:
        assert (out / "pred" / name).read_bytes() == (dis_run / "pred" / name).read_bytes(), name


def test_probability_map_thresholds_to_sama_predictor_mask(toy, checkpoints):
    model = load_sama(checkpoints[1], device=DEVICE)
    image_path, gt_path = readers.dis_pairs(toy, "DIS-VD")[0]
    image, gt = readers.load_image(image_path), readers.load_mask(gt_path)
    box = data.mask_to_box(gt > 128)
    ours = Predictor(model, TASKS)
    ours.set_image(image)
    out = ours.predict(box=box)
    official = SamaPredictor(model)
    official.set_image(image)
    maps = sama_maps(official, box=box)
    mask, alpha, sam_mask = maps["seg_logits"] > 0, maps["alpha"], maps["sam_logits"] > 0
    # float32 sigmoid of a logit within ~1e-6 of 0 may round to 0.5
    clear = np.abs(out["seg"] - 0.5) > 1e-6
    assert np.array_equal((out["seg"] > 0.5)[clear], mask[clear])
    assert 0 < mask.sum() < mask.size or not mask.any()
    np.testing.assert_array_equal(out["alpha"], alpha)
    np.testing.assert_array_equal(out["sam"], sam_mask)


def test_sam_and_sama_are_scored_like_for_like(toy, checkpoints, tmp_path):
    """Plain SAM on a segmentation split: its probability map sigmoid(logits) in pred/, its mask
    (logits > 0) in mask/, each scored as its scores name."""
    sam_path, _ = checkpoints
    out = tmp_path / "sam"
    assert run("--split", "DIS-VD", "--data", toy, "--model", "sam", "--sam-checkpoint", sam_path,
               "--out", out) == 0
    report = json.loads((out / "metrics.json").read_text())
    reference = Predictor(load_sam(sam_path, device=DEVICE))
    direct = SegMetrics(hce=True)  # DIS-VD: with the human correction effort
    for image_path, gt_path in readers.dis_pairs(toy, "DIS-VD"):
        gt = readers.load_mask(gt_path)
        reference.set_image(readers.load_image(image_path))
        maps = reference.predict(box=data.mask_to_box(gt > 128))
        pred = readers.load_mask(out / "pred" / f"{gt_path.stem}.png")
        mask = readers.load_mask(out / "mask" / f"{gt_path.stem}.png")
        np.testing.assert_array_equal(pred, scoring.probability_to_grey(maps["seg"]))
        np.testing.assert_array_equal(mask >= 128, maps["mask"])
        assert len(np.unique(pred)) > 2  # a probability map, not SAM's mask
        direct.update(pred, gt, mask >= 128)
    assert report["scores"] == direct.results()
    assert "sigmoid(mask logits)" in report["prediction"]


def test_the_mask_is_cut_at_the_recorded_threshold(toy, checkpoints, tmp_path):
    sam_path, sama_path = checkpoints
    model = load_sama(sama_path, device=DEVICE)
    pairs = readers.dis_pairs(toy, "DIS-VD")[:1]
    plain = Predictor(model, TASKS)
    seg = []
    for image_path, gt_path in pairs:
        plain.set_image(readers.load_image(image_path))
        seg.append(plain.predict(box=data.mask_to_box(readers.load_mask(gt_path) > 128))["seg"])
    threshold = float(np.median(seg[0]))  # a threshold that cuts the maps elsewhere than 0.5
    assert not np.array_equal(seg[0] > threshold, seg[0] > 0.5)
    recorded = tmp_path / "sama-threshold.pt"
    save_sama(model, recorded, sam_identity(sam_path, "tiny"), TASKS, threshold=threshold)
    out = tmp_path / "eval"
    assert run("--split", "DIS-VD", "--data", toy, "--checkpoint", recorded, "--out", out,
               "--sam-checkpoint", sam_path, "--limit", 1) == 0
    for (_, gt_path), probability in zip(pairs, seg):
        mask = readers.load_mask(out / "mask" / f"{gt_path.stem}.png")
        np.testing.assert_array_equal(mask >= 128, probability > threshold)
    report = json.loads((out / "metrics.json").read_text())
    assert report["config"]["threshold"] == threshold
    assert f"probability > {threshold:g}" in report["prediction"]


# ----------------------------------------------------------------------------------------------
# Table 5: a model is scored through a head it trained, or refused
# ----------------------------------------------------------------------------------------------


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return torch.sigmoid(torch.from_numpy(logits)).numpy()


def test_matting_only_model_is_scored_on_dis_through_its_matting_head(toy, single_task, tmp_path):
    out = tmp_path / "dis"
    assert run("--split", "DIS-VD", "--data", toy, "--checkpoint", single_task["matting"],
               "--out", out) == 0
    reference = SamaPredictor(load_sama(single_task["matting"], device=DEVICE))
    for image_path, gt_path in readers.dis_pairs(toy, "DIS-VD"):
        gt = readers.load_mask(gt_path)
        reference.set_image(readers.load_image(image_path))
        maps = sama_maps(reference, box=data.mask_to_box(gt > 128))
        seg_logits, alpha = maps["seg_logits"], maps["alpha"]
        written = readers.load_mask(out / "pred" / f"{gt_path.stem}.png")
        # the matting head's alpha
        np.testing.assert_array_equal(written, scoring.probability_to_grey(alpha))
        # not the segmentation head, which never trained
        assert not np.array_equal(written, scoring.probability_to_grey(sigmoid(seg_logits)))
    report = json.loads((out / "metrics.json").read_text())
    assert report["config"]["tasks"] == ["matting"] and "matting head" in report["prediction"]
    md = (out / "results.md").read_text()
    marked = [line for line in md.splitlines() if "(same configuration as ours)" in line]
    assert len(marked) == 1 and "trained on matting only" in marked[0] and "0.682" in marked[0], md
    assert "scored through the head it trained" in md


def test_segmentation_only_model_is_scored_on_mattes_through_its_segmentation_head(toy, single_task,
                                                                                    tmp_path):
    out = tmp_path / "aim500"
    assert run("--split", "AIM-500", "--aim500", toy, "--checkpoint", single_task["seg"],
               "--out", out) == 0
    reference = SamaPredictor(load_sama(single_task["seg"], device=DEVICE))
    for image_path, alpha_path, _ in readers.aim500_pairs(toy):
        gt = readers.load_mask(alpha_path)
        reference.set_image(readers.load_image(image_path))
        maps = sama_maps(reference, box=data.mask_to_box(gt > 0))
        seg_logits, alpha = maps["seg_logits"], maps["alpha"]
        written = readers.load_mask(out / "pred" / f"{alpha_path.stem}.png")
        np.testing.assert_array_equal(written, scoring.probability_to_grey(sigmoid(seg_logits)))
        # not the untrained head
        assert not np.array_equal(written, scoring.probability_to_grey(alpha))
    report = json.loads((out / "metrics.json").read_text())
    assert report["config"]["tasks"] == ["seg"] and "no matting head" in report["prediction"]


def test_an_untrained_head_is_refused_in_one_line(toy, checkpoints, single_task, tmp_path, capsys):
    out = tmp_path / "out"
    common = ("--split", "DIS-VD", "--data", toy, "--out", out)
    assert run(*common, "--checkpoint", single_task["matting"], "--tasks", "seg") == 2
    err = one_error_line(capsys)
    assert str(single_task["matting"]) in err and "--tasks matting" in err and "--tasks seg" in err
    assert run(*common, "--checkpoint", checkpoints[1], "--tasks", "matting") == 2
    assert "--tasks both" in one_error_line(capsys)
    old = tmp_path / "old.pt"  # a checkpoint that does not record its tasks
    ckpt = torch.load(checkpoints[1], weights_only=True)
    del ckpt["tasks"]
    torch.save(ckpt, old)
    assert run(*common, "--checkpoint", old) == 2
    err = one_error_line(capsys)
    assert str(old) in err and "records no trained tasks" in err
    assert not out.exists()  # refused before anything was written


def test_predictor_reads_a_single_task_model_through_its_trained_head(toy, checkpoints,
                                                                     monkeypatch):
    model = load_sama(checkpoints[1], device=DEVICE)
    image_path, gt_path = readers.dis_pairs(toy, "DIS-VD")[0]
    box = data.mask_to_box(readers.load_mask(gt_path) > 128)
    passes = []  # the SAMA passes a prompt runs: the trained heads' only
    decode_embedded = model.decode_embedded

    def counted(features, task, *rest):
        passes.append(task)
        return decode_embedded(features, task, *rest)

    monkeypatch.setattr(model, "decode_embedded", counted)
    maps = {}
    for tasks in (["seg"], ["matting"], ["matting", "seg"]):
        predictor = Predictor(model, tasks)
        predictor.set_image(readers.load_image(image_path))
        passes.clear()
        maps[tasks[0] if len(tasks) == 1 else "both"] = predictor.predict(box=box)
        assert sorted(passes) == sorted(tasks)
    both = maps["both"]
    assert not np.array_equal(both["seg"], both["alpha"])
    for key in ("seg", "alpha"):
        np.testing.assert_array_equal(maps["seg"][key], both["seg"])
        np.testing.assert_array_equal(maps["matting"][key], both["alpha"])
    # without tasks given, the ones its file records (load_sama's checkpoint_record) ...
    assert set(Predictor(model).tasks) == set(model.checkpoint_record.tasks) == {"seg", "matting"}
    # ... and a SAMA made in memory, which records none, must be told
    with pytest.raises(ValueError, match="tasks"):
        Predictor(SAMA(model.sam))
    with pytest.raises(ValueError, match="tasks"):
        Predictor(model, ["alpha"])


def test_points_split_scores_equal_iou_on_the_pngs(toy, checkpoints, tmp_path):
    out = tmp_path / "coift"
    assert (
        run(
            "--split",
            "COIFT",
            "--coift",
            toy / "COIFT",
            "--checkpoint",
            checkpoints[1],
            "--out",
            out,
        )
        == 0
    )
    report = json.loads((out / "metrics.json").read_text())
    for k in scoring.POINT_COUNTS:
        ious, bious = [], []
        for _, gt_path in readers.coift_pairs(toy / "COIFT"):
            gt = readers.load_mask(gt_path) > 128
            pred = readers.load_mask(out / f"pred-{k}pt" / f"{gt_path.stem}.png") >= 128
            ious.append(mask_iou(pred, gt))
            bious.append(boundary_iou(pred, gt))
        assert report["scores"][f"mIoU@{k}"] == pytest.approx(np.mean(ious), abs=1e-12)
        assert report["scores"][f"mBIoU@{k}"] == pytest.approx(np.mean(bious), abs=1e-12)


def test_sam_baseline_on_matting_and_resume(toy, checkpoints, tmp_path):
    sam_path, _ = checkpoints
    out = tmp_path / "comp"
    args = (
        "--split",
        "Composition-1K",
        "--matting",
        toy / "AIM",
        "--model",
        "sam",
        "--sam-checkpoint",
        sam_path,
        "--out",
        out,
    )
    assert run(*args) == 0
    triples = readers.composition1k_pairs(toy / "AIM")
    preds = {t[1].stem: out / "pred" / f"{t[1].stem}.png" for t in triples}

    def direct():
        m = MattingMetrics()
        for _, alpha_path, trimap_path in triples:
            m.update(
                readers.load_mask(preds[alpha_path.stem]),
                readers.load_mask(alpha_path),
                readers.load_mask(trimap_path),
            )
        return m.results()

    report = json.loads((out / "metrics.json").read_text())
    assert report["scores"] == direct() and report["scores"]["region"].startswith("unknown")
    assert "alpha > 0" in report["prompt"] and report["config"]["model"] == "sam"
    for p in preds.values():
        # SAM's binary mask as alpha
        assert set(np.unique(readers.load_mask(p)).tolist()) <= {0, 255}

    # --resume: a readable PNG is reused as it is (even edited), a missing or broken one recomputed
    first, second, third = list(preds.values())
    original = {p: readers.load_mask(p) for p in preds.values()}
    edited = np.full_like(original[first], 77)
    outputs.save_png(edited, first)
    second.unlink()
    third.write_bytes(third.read_bytes()[:40])  # truncated
    assert run(*args, "--resume") == 0
    assert np.array_equal(readers.load_mask(first), edited)
    assert np.array_equal(readers.load_mask(second), original[second])
    assert np.array_equal(readers.load_mask(third), original[third])
    report = json.loads((out / "metrics.json").read_text())
    assert report["scores"] == direct()  # scored from the files as they are now

    # --overwrite: everything is recomputed
    assert run(*args, "--overwrite") == 0
    assert np.array_equal(readers.load_mask(first), original[first])


def test_resume_refuses_predictions_of_another_model(toy, checkpoints, tmp_path, capsys):
    out = tmp_path / "aim500"
    common = ("--split", "AIM-500", "--aim500", toy, "--out", out)
    assert run(*common, "--checkpoint", checkpoints[1]) == 0
    report = json.loads((out / "metrics.json").read_text())
    direct = MattingMetrics()
    for _, alpha_path, _ in readers.aim500_pairs(toy):
        direct.update(
            readers.load_mask(out / "pred" / f"{alpha_path.stem}.png"),
            readers.load_mask(alpha_path),
        )
    assert report["scores"] == direct.results() and report["scores"]["region"] == "whole image"
    capsys.readouterr()
    assert run(*common, "--model", "sam", "--sam-checkpoint", checkpoints[0], "--resume") == 2
    assert str(out) in one_error_line(capsys)


def test_ablation_switch_must_match_the_checkpoint(toy, checkpoints, tmp_path, capsys):
    args = (
        "--split",
        "DIS-VD",
        "--data",
        toy,
        "--checkpoint",
        checkpoints[1],
        "--out",
        tmp_path / "out",
    )
    assert run(*args, "--no-local-adapter") == 2
    assert "use_local_adapter" in one_error_line(capsys)


@pytest.mark.parametrize("argv, named", [
    (("--folder", "F", "--split", "DIS-TE1", "--data", "D"), "--folder: not read by --split "
                                                             "DIS-TE1, which reads --data"),
    (("--folder", "F", "--data", "D"), "--data: not read with --folder"),
    (("--split", "COIFT", "--data", "D"), "--data: not read by --split COIFT, which reads --coift"),
    (("--split", "AIM-500", "--backgrounds", "B"), "--backgrounds: not read by --split AIM-500"),
    (("--split", "DIS-VD", "--model", "sam", "--sam-checkpoint", "S", "--checkpoint", "C"),
     "--checkpoint: --model sam with --sam-checkpoint"),
    (("--split", "DIS-VD", "--model", "sam", "--sam-checkpoint", "S", "--no-mvle"),
     "--no-mvle: --model sam with --sam-checkpoint"),
    (("--split", "DIS-VD", "--model", "sam", "--checkpoint", "C", "--tasks", "seg"), "--tasks: "),
])
def test_options_that_another_option_would_ignore_are_refused(argv, named, tmp_path, capsys):
    out = tmp_path / "out"
    assert run(*argv, "--out", out) == 2
    assert one_error_line(capsys).startswith(f"error: {named}")
    assert not out.exists()


def test_unknown_split_lists_the_valid_ones(capsys):
    assert run("--split", "DIS-TE9") == 2
    err = one_error_line(capsys)
    assert all(name in err for name in evaluate.SPLITS)


@pytest.mark.parametrize("split, option, layout", [("DIS-TE2", "--data", "DIS5K/"),
                                                   ("COIFT", "--coift", "COIFT/"),
                                                   ("P3M-500-NP", "--p3m", "P3M-10k/")])
def test_missing_dataset_folder_is_one_line(tmp_path, capsys, split, option, layout):
    missing = tmp_path / "nowhere"
    assert run("--split", split, option, missing, "--out", tmp_path / "out") == 2
    err = one_error_line(capsys)
    assert str(missing) in err and layout in err


def test_bad_checkpoint_is_one_line(toy, tmp_path, capsys):
    bad = tmp_path / "sama.pt"
    bad.write_bytes(b"not a checkpoint")
    assert (
        run("--split", "DIS-VD", "--data", toy, "--checkpoint", bad, "--out", tmp_path / "out") == 2
    )
    assert str(bad) in one_error_line(capsys)


# ----------------------------------------------------------------------------------------------
# --resume knows the weights by their content; bad splits and options are refused up front
# ----------------------------------------------------------------------------------------------


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def files_under(folder: Path) -> set[str]:
    if not folder.exists():
        return set()
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def test_resume_refuses_other_weights_at_the_same_path(toy, checkpoints, tmp_path, capsys):
    sam_path, sama_path = checkpoints
    ckpt = tmp_path / "sama.pt"
    shutil.copy(sama_path, ckpt)
    shutil.copy(sam_path, tmp_path)  # beside it, as the SAMA file names it
    out = tmp_path / "dis"
    args = ("--split", "DIS-VD", "--data", toy, "--limit", 1, "--out", out)
    assert run(*args, "--checkpoint", ckpt) == 0
    settings = json.loads((out / "settings.json").read_text())
    assert settings["checkpoint_sha256"] == sha256(ckpt)
    assert settings["sam_sha256"] == sha256(sam_path)
    first = out / "pred" / f"{readers.dis_pairs(toy, 'DIS-VD')[0][1].stem}.png"
    edited = np.full_like(readers.load_mask(first), 77)  # tells a reused PNG from a recomputed one
    outputs.save_png(edited, first)
    before = {name: (out / name).read_bytes() for name in files_under(out)}

    # retrained: other weights at the same path
    torch.manual_seed(1)
    save_sama(SAMA(load_sam(sam_path)), ckpt, sam_identity(sam_path, "tiny"), TASKS)
    capsys.readouterr()
    assert run(*args, "--checkpoint", ckpt, "--resume") == 2
    assert one_error_line(capsys) == (f"error: {out}: holds predictions made with another "
                                      "checkpoint_sha256; use another --out or --overwrite")
    assert {name: (out / name).read_bytes() for name in files_under(out)} == before

    # the same weights at another path: the predictions are theirs, reused
    moved = tmp_path / "moved" / "sama.pt"
    moved.parent.mkdir()
    shutil.copy(sama_path, moved)
    shutil.copy(sam_path, moved.parent)
    assert run(*args, "--checkpoint", moved, "--resume") == 0
    assert np.array_equal(readers.load_mask(first), edited)
    assert json.loads((out / "settings.json").read_text())["checkpoint"] == str(moved.resolve())

    # settings.json gone: nothing says which weights made the PNGs
    (out / "settings.json").unlink()
    capsys.readouterr()
    assert run(*args, "--checkpoint", moved, "--resume") == 2
    assert "no settings.json" in one_error_line(capsys)
    assert np.array_equal(readers.load_mask(first), edited)


def test_resume_refuses_another_sam_file_at_the_same_path(toy, tmp_path, capsys):
    sam_path = tmp_path / "sam.pth"
    torch.manual_seed(5)
    torch.save(Sam(SAM_VARIANTS["tiny"]).state_dict(), sam_path)
    out = tmp_path / "aim500"
    args = ("--split", "AIM-500", "--aim500", toy, "--model", "sam", "--sam-checkpoint", sam_path,
            "--out", out)
    assert run(*args) == 0
    assert json.loads((out / "settings.json").read_text())["sam_sha256"] == sha256(sam_path)
    torch.manual_seed(6)
    torch.save(Sam(SAM_VARIANTS["tiny"]).state_dict(), sam_path)
    capsys.readouterr()
    assert run(*args, "--resume") == 2
    assert "another sam_sha256" in one_error_line(capsys)


def blacken(path: Path) -> None:
    from PIL import Image

    Image.fromarray(np.zeros_like(readers.load_mask(path))).save(path)


@pytest.mark.parametrize("split", ["DIS-VD", "COIFT", "Composition-1K"])
def test_an_empty_gt_is_refused_before_any_prediction(split, toy, checkpoints, tmp_path, capsys):
    """The last GT all black: was scored IoU 0 in COIFT (zero points), a traceback in DIS and
    Composition-1K after the other images' predictions were written."""
    folder, option, reader = {
        "DIS-VD": ("DIS5K", "--data", lambda root: readers.dis_pairs(root, split)),
        "COIFT": ("COIFT", "--coift", readers.coift_pairs),
        "Composition-1K": ("AIM", "--matting", readers.composition1k_pairs),
    }[split]
    root = tmp_path / folder
    shutil.copytree(toy / folder, root)
    gt = reader(root)[-1][1]
    blacken(gt)
    out = tmp_path / "out"
    capsys.readouterr()
    assert run("--split", split, option, root, "--checkpoint", checkpoints[1], "--out", out) == 2
    what = "alpha (no pixel > 0)" if split == "Composition-1K" else "mask (no pixel > 128)"
    assert one_error_line(capsys) == f"error: {gt}: empty {what}"
    assert not out.exists()


def test_a_size_mismatch_is_found_before_any_prediction(toy, checkpoints, tmp_path, capsys):
    from PIL import Image

    root = tmp_path / "DIS5K"
    shutil.copytree(toy / "DIS5K", root)
    image, gt = readers.dis_pairs(root, "DIS-VD")[-1]
    mask = Image.open(gt)
    mask.resize((mask.width + 3, mask.height)).save(gt)
    out = tmp_path / "out"
    capsys.readouterr()
    assert run("--split", "DIS-VD", "--data", root, "--checkpoint", checkpoints[1],
               "--out", out) == 2
    size = f"{mask.width + 3}x{mask.height}"
    assert one_error_line(capsys).startswith(f"error: {gt}: size {size} differs from {image}")
    assert not out.exists()


@pytest.mark.parametrize("option", ["--limit", "--vis"])
def test_negative_counts_are_refused(option, toy, checkpoints, tmp_path, capsys):
    out = tmp_path / "out"
    args = ("--split", "DIS-VD", "--data", toy, "--checkpoint", checkpoints[1], "--out", out)
    assert run(*args, option, -1) == 2
    assert one_error_line(capsys) == f"error: {option} -1: must be 0 or more"
    assert not out.exists()


def test_non_finite_output_is_neither_written_nor_scored(toy, checkpoints, tmp_path, monkeypatch,
                                                         capsys):
    real = SamaPredictor.predict_torch

    def overflowing(self, *args, **kwargs):
        maps = real(self, *args, **kwargs)
        return {**maps, "seg_logits": maps["seg_logits"] * float("nan")}

    monkeypatch.setattr(SamaPredictor, "predict_torch", overflowing)
    out = tmp_path / "out"
    capsys.readouterr()
    assert run("--split", "DIS-VD", "--data", toy, "--checkpoint", checkpoints[1],
               "--out", out) == 3
    image = readers.dis_pairs(toy, "DIS-VD")[0][0]
    assert one_error_line(capsys) == (f"error: {image}: NaN or inf in the model's segmentation "
                                      "logits; not written, not scored")
    assert files_under(out) == {"settings.json"}
