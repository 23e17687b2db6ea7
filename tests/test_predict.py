"""Tests for predict.py: three images at the input's displayed size and orientation, the cutout's
alpha equal to alpha.png and its colours the estimated foreground, and one-line errors for bad
prompts."""

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import sama_maps
from PIL import Image

import foreground
import frame
import outputs
import predict
import readers
from load_sam_weights import (
    STANDIN_SAM,
    STANDIN_SAMA,
    load_sam,
    load_sama,
    read_sama_checkpoint,
    sam_identity,
    save_sama,
)
from predictor import Predictor
from sam import SAM_VARIANTS, Sam
from sama import SAMA, TASKS, SamaPredictor

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # the device predict.py picks: same numbers
# as stored; EXIF orientation 6 (rotate 90 degrees) displays it 80 high, 48 wide
RAW_H, RAW_W = 48, 80


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    sam_path, sama_path = folder / "sam_tiny.pth", folder / "sama.pt"
    torch.save(Sam(SAM_VARIANTS["tiny"]).state_dict(), sam_path)
    save_sama(SAMA(load_sam(sam_path)), sama_path, sam_identity(sam_path, "tiny"), TASKS)
    return sama_path


@pytest.fixture(scope="module")
def rotated_image(tmp_path_factory) -> Path:
    """A non-square JPEG stored landscape with an EXIF rotation: displayed portrait."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (RAW_H, RAW_W, 3), dtype=np.uint8)
    pixels[10:30, 20:60] = (230, 60, 30)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display
    path = tmp_path_factory.mktemp("img") / "photo.jpg"
    Image.fromarray(pixels).save(path, exif=exif, quality=95)
    return path


def test_writes_three_images_at_the_displayed_size(checkpoint, rotated_image, tmp_path, capsys):
    image = readers.load_image(rotated_image)
    assert image.shape == (RAW_W, RAW_H, 3)  # the test image really is rotated by EXIF
    prefix = tmp_path / "out" / "cut"
    # y up to 70 only fits the displayed (portrait) image, not the stored one (48 high)
    box = [5, 10, 40, 70]
    assert predict.main([str(rotated_image), "--box", *map(str, box), "--point", "20", "40",
                         "--checkpoint", str(checkpoint), "--out", str(prefix)]) == 0
    mask = np.asarray(Image.open(f"{prefix}_mask.png"))
    alpha = np.asarray(Image.open(f"{prefix}_alpha.png"))
    cutout = Image.open(f"{prefix}_cutout.png")
    assert mask.shape == alpha.shape == (RAW_W, RAW_H)
    assert cutout.mode == "RGBA" and cutout.size == (RAW_H, RAW_W)
    cut = np.asarray(cutout)
    np.testing.assert_array_equal(cut[..., 3], alpha)
    assert set(np.unique(mask).tolist()) <= {0, 255}

    # the same prompt through SamaPredictor directly gives the same maps (mask: probability > 0.5)
    ref = SamaPredictor(load_sama(checkpoint, device=DEVICE))
    ref.set_image(image)
    ref_maps = sama_maps(ref, np.array([[20.0, 40.0]]), np.array([1]), np.array(box, dtype=float))
    ref_logits, ref_alpha = ref_maps["seg_logits"], ref_maps["alpha"]
    ref_mask = torch.sigmoid(torch.from_numpy(ref_logits)).numpy() > 0.5
    np.testing.assert_array_equal(mask, ref_mask.astype(np.uint8) * 255)
    np.testing.assert_array_equal(alpha, np.round(ref_alpha * 255).astype(np.uint8))
    # the cutout's colours: the foreground estimated from the image (in the displayed orientation)
    # and the alpha, not the image, where the alpha is partial
    np.testing.assert_array_equal(cut[..., :3], foreground.cutout(image, ref_alpha)[..., :3])
    partial = (alpha > 0) & (alpha < 255)
    assert partial.mean() > 0.5 and (cut[..., :3] != image)[partial].any()


def test_a_matting_only_model_masks_with_its_alpha(checkpoint, rotated_image, tmp_path):
    ckpt = torch.load(checkpoint, weights_only=True)
    ckpt["tasks"] = ["matting"]  # the same weights, recorded as trained for matting only
    matting_only = checkpoint.parent / "sama-matting.pt"  # beside its SAM file, which it names
    torch.save(ckpt, matting_only)
    prefix = tmp_path / "cut"
    box = [5, 10, 40, 70]
    assert predict.main([str(rotated_image), "--box", *map(str, box),
                         "--checkpoint", str(matting_only), "--out", str(prefix)]) == 0
    ref = SamaPredictor(load_sama(checkpoint, device=DEVICE))
    ref.set_image(readers.load_image(rotated_image))
    ref_maps = sama_maps(ref, box=np.array(box, dtype=float))
    seg_mask, ref_alpha = ref_maps["seg_logits"] > 0, ref_maps["alpha"]
    alpha_mask = ref_alpha > 0.5
    assert not np.array_equal(seg_mask, alpha_mask)  # the heads disagree: the test tells them apart
    written = np.asarray(Image.open(f"{prefix}_mask.png"))
    np.testing.assert_array_equal(written, alpha_mask.astype(np.uint8) * 255)


def test_the_mask_is_cut_at_the_threshold_the_checkpoint_records(checkpoint, rotated_image,
                                                                 tmp_path):
    """A threshold recorded in sama.pt (here the probability map's median, so that it differs from
    0.5) makes predict.py's mask; without one, 0.5 (the test above)."""
    image, box = readers.load_image(rotated_image), np.array([5.0, 10, 40, 70])
    model = load_sama(checkpoint, device=DEVICE)
    plain = Predictor(model, TASKS)
    plain.set_image(image)
    seg = plain.predict(box=box)["seg"]
    threshold = float(np.median(seg))
    assert not np.array_equal(seg > threshold, seg > 0.5)
    ckpt = torch.load(checkpoint, weights_only=True)
    recorded = tmp_path / "sama-threshold.pt"
    save_sama(model, recorded, ckpt["sam"], TASKS, threshold=threshold)
    assert read_sama_checkpoint(recorded)["threshold"] == threshold
    assert read_sama_checkpoint(checkpoint)["threshold"] == 0.5  # none recorded: the default
    prefix = tmp_path / "cut"
    assert predict.main([str(rotated_image), "--box", *map(str, box.tolist()),
                         "--checkpoint", str(recorded), "--out", str(prefix),
                         "--sam-checkpoint", str(checkpoint.with_name("sam_tiny.pth"))]) == 0
    written = np.asarray(Image.open(f"{prefix}_mask.png"))
    np.testing.assert_array_equal(written, (seg > threshold).astype(np.uint8) * 255)


def test_sam_is_read_through_its_probability_map_and_its_mask(checkpoint, rotated_image):
    """Like for like: SAM's "seg" is the sigmoid of the logits SamPredictor up-samples, its "mask"
    those logits above 0, as SamPredictor's own mask."""
    from sam import SamPredictor

    sam = load_sama(checkpoint, device=DEVICE).sam
    image, box = readers.load_image(rotated_image), np.array([5.0, 10, 40, 70])
    ours = Predictor(sam)
    ours.set_image(image)
    out = ours.predict(box=box)
    official = SamPredictor(sam)
    official.set_image(image)
    logits, _, _ = official.predict(box=box, multimask_output=False, return_logits=True)
    masks, _, _ = official.predict(box=box, multimask_output=False)
    np.testing.assert_array_equal(out["seg"], torch.sigmoid(torch.from_numpy(logits[0])).numpy())
    np.testing.assert_array_equal(out["mask"], masks[0])
    assert len(np.unique(out["seg"])) > 2  # a probability map, not the mask


def test_default_prefix_is_the_image_path_without_extension(checkpoint, rotated_image, tmp_path):
    image = tmp_path / "pic.jpg"
    image.write_bytes(rotated_image.read_bytes())
    assert predict.main([str(image), "--neg-point", "1", "1", "--point", "24", "40",
                         "--checkpoint", str(checkpoint)]) == 0
    for name in ("mask", "alpha", "cutout"):
        assert (tmp_path / f"pic_{name}.png").is_file()


@pytest.mark.parametrize("prompt", [
    ["--box", "30", "10", "30", "70"],        # x1 == x0
    ["--box", "5", "60", "40", "10"],         # y1 < y0
    ["--box", "50", "10", "60", "70"],        # wholly beyond the displayed width (48)
    ["--box", "-9", "10", "-1", "70"],        # wholly left of the image
    ["--point", "10", "20", "30"],            # odd number of values
    ["--neg-point", "5"],                     # odd number of values
    ["--point", "10", "90"],                  # y beyond the displayed height (80)
    [],                                       # no prompt at all
    ["--box", "nan", "10", "40", "70"],       # NaN fails every comparison: was accepted
    ["--box", "5", "nan", "40", "70"],
    ["--point", "nan", "40"],
    ["--neg-point", "3", "inf", "--point", "20", "40"],
])
def test_bad_prompts_exit_2_with_one_line(checkpoint, rotated_image, tmp_path, capsys, prompt):
    prefix = tmp_path / "x"
    assert (
        predict.main(
            [str(rotated_image), *prompt, "--checkpoint", str(checkpoint), "--out", str(prefix)]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    if any(v in ("nan", "inf") for v in prompt):
        assert "must be finite numbers" in err, err
    assert not list(tmp_path.glob("x_*.png"))


def test_non_numeric_prompt_is_refused_by_argparse(checkpoint, rotated_image, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        predict.main([str(rotated_image), "--box", "5", "ten", "40", "70",
                      "--checkpoint", str(checkpoint), "--out", str(tmp_path / "x")])
    assert info.value.code == 2
    assert "argument --box: invalid float value: 'ten'" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_unreadable_image_and_checkpoint_exit_2(checkpoint, rotated_image, tmp_path, capsys):
    assert (
        predict.main(
            [str(tmp_path / "none.jpg"), "--point", "1", "1", "--checkpoint", str(checkpoint)]
        )
        == 2
    )
    assert "none.jpg" in capsys.readouterr().err
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"nope")
    assert predict.main([str(rotated_image), "--point", "1", "1", "--checkpoint", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert "bad.pt" in err and "\n" not in err


# ----------------------------------------------------------------------------------------------
# No silent wrong result: NaN weights and NaN outputs are refused, nothing written
# ----------------------------------------------------------------------------------------------

BOX = ["--box", "5", "10", "40", "70"]


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def run_predict(rotated_image, checkpoint, prefix, capsys, *extra) -> tuple[int, str]:
    """predict.main on BOX -> (exit code, stderr)."""
    capsys.readouterr()
    code = predict.main([str(rotated_image), *BOX, "--checkpoint", str(checkpoint),
                         "--out", str(prefix), *map(str, extra)])
    return code, capsys.readouterr().err


def test_nan_weights_are_refused_before_anything_is_written(checkpoint, rotated_image, tmp_path,
                                                            capsys):
    ckpt = torch.load(checkpoint, weights_only=True)
    key = next(k for k, v in ckpt["state_dict"].items() if v.is_floating_point())
    ckpt["state_dict"][key] = ckpt["state_dict"][key] * float("nan")
    broken = tmp_path / "nan.pt"
    torch.save(ckpt, broken)
    code, err = run_predict(rotated_image, broken, tmp_path / "x", capsys, "--sam-checkpoint",
                            checkpoint.parent / "sam_tiny.pth")
    assert code == 2
    assert err == (f"error: {broken}: NaN or inf in 1 tensor ({key}): broken weights, e.g. from a "
                   "diverged training run\n")
    assert files_under(tmp_path) == {"nan.pt"}


def test_non_finite_output_exits_3_and_writes_nothing(checkpoint, rotated_image, tmp_path,
                                                      monkeypatch, capsys):
    real = SamaPredictor.predict_torch

    def overflowing(self, *args, **kwargs):  # as an overflow in half precision would give
        maps = real(self, *args, **kwargs)
        return {**maps, "alpha": maps["alpha"] * float("nan")}

    monkeypatch.setattr(SamaPredictor, "predict_torch", overflowing)
    code, err = run_predict(rotated_image, checkpoint, tmp_path / "x", capsys)
    assert code == 3
    assert err == f"error: {rotated_image}: NaN or inf in the model's alpha; nothing written\n"
    assert not any(tmp_path.iterdir())


def test_predictor_refuses_non_finite_maps_for_sama_and_sam(checkpoint, rotated_image, monkeypatch):
    from sam import SamPredictor

    model = load_sama(checkpoint, device=DEVICE)
    image = readers.load_image(rotated_image)
    box = np.array([5.0, 10, 40, 70])
    for wrapped, cls in ((model, SamaPredictor), (model.sam, SamPredictor)):
        real = cls.predict_torch
        predictor = Predictor(wrapped, TASKS if cls is SamaPredictor else None)
        predictor.set_image(image)
        assert predictor.predict(box=box)["seg"].shape == image.shape[:2]

        def poisoned(self, *args, real=real, **kwargs):  # the logits
            out = real(self, *args, **kwargs)
            if isinstance(out, dict):  # SamaPredictor's maps
                return {**out, "seg_logits": out["seg_logits"] + float("inf")}
            first, *rest = out  # SamPredictor's masks (logits), scores, low-res logits
            return (first + float("inf"), *rest)

        monkeypatch.setattr(cls, "predict_torch", poisoned)
        with pytest.raises(frame.NonFiniteOutput,
                           match=r"^NaN or inf in the model's (SAM|segmentation) logits$"):
            predictor.predict(box=box)
        monkeypatch.undo()


# ----------------------------------------------------------------------------------------------
# The three outputs: all or nothing, one line when they cannot be written
# ----------------------------------------------------------------------------------------------


def test_out_under_a_file_is_one_line(checkpoint, rotated_image, tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("a file")
    code, err = run_predict(rotated_image, checkpoint, notes / "cut" / "x", capsys)
    assert code == 2
    assert err == (f"error: {notes}: is a file, so {notes / 'cut'} cannot be a folder "
                   "(choose another --out)\n")
    assert files_under(tmp_path) == {"notes.txt"} and notes.read_text() == "a file"


def test_a_target_that_is_a_folder_is_one_line(checkpoint, rotated_image, tmp_path, capsys):
    (tmp_path / "x_alpha.png").mkdir()
    code, err = run_predict(rotated_image, checkpoint, tmp_path / "x", capsys)
    assert code == 2
    folder = tmp_path / "x_alpha.png"
    assert err == f"error: {folder}: is a folder, not a file (choose another --out)\n"
    assert files_under(tmp_path) == {"x_alpha.png"}  # no mask, no cutout, no *.tmp


def test_full_disk_on_the_third_file_leaves_nothing(checkpoint, rotated_image, tmp_path,
                                                    monkeypatch, capsys):
    import errno

    # an earlier run's outputs for the same prefix stay as they were: never a mix of two runs
    old = {name: tmp_path / "out" / f"x_{name}.png" for name in ("mask", "alpha", "cutout")}
    for path in old.values():
        outputs.save_png(np.full((4, 4), 7, np.uint8), path)
    before = {path: path.read_bytes() for path in old.values()}
    real_save, calls = Image.Image.save, []

    def save(self, fp, *args, **kwargs):
        calls.append(fp)
        if len(calls) == 3:
            with open(fp, "wb") as f:  # part of the file reached the disk, then it was full
                f.write(b"\x89PNG")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", save)
    code, err = run_predict(rotated_image, checkpoint, tmp_path / "out" / "x", capsys,
                            "--overwrite")
    assert code == 2 and len(calls) == 3
    assert err == (f"error: {old['cutout']}: cannot write (No space left on device); none of "
                   "x_mask.png, x_alpha.png, x_cutout.png written\n")
    assert {path: path.read_bytes() for path in old.values()} == before
    assert files_under(tmp_path) == {"out", *(f"out/{path.name}" for path in old.values())}

    # into a new folder: the folder made for the outputs goes too
    calls.clear()
    code, err = run_predict(rotated_image, checkpoint, tmp_path / "new" / "deeper" / "x", capsys)
    assert code == 2 and "No space left on device" in err
    assert not (tmp_path / "new").exists()


def test_permission_denied_while_writing_leaves_nothing(checkpoint, rotated_image, tmp_path,
                                                        monkeypatch, capsys):
    def save(self, fp, *args, **kwargs):  # a folder that turned read-only after the check
        raise PermissionError(13, os.strerror(13), str(fp))

    monkeypatch.setattr(Image.Image, "save", save)
    code, err = run_predict(rotated_image, checkpoint, tmp_path / "x", capsys)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"error: {tmp_path / 'x_mask.png'}: cannot write (Permission denied)")
    assert not any(tmp_path.iterdir())


def test_read_only_folder_is_refused_up_front(checkpoint, rotated_image, tmp_path, monkeypatch,
                                              capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    if os.geteuid() == 0:  # root may write anywhere: answer as the kernel would for anyone else
        real_access = os.access
        monkeypatch.setattr(os, "access",
                            lambda p, mode: False if Path(p) == folder else real_access(p, mode))
    try:
        code, err = run_predict(rotated_image, checkpoint, folder / "x", capsys)
    finally:
        folder.chmod(0o700)
    assert code == 2
    assert err == f"error: {folder}: no permission to write there (choose another --out)\n"
    assert not any(folder.iterdir())


def test_a_box_partly_outside_is_clipped_with_a_line_saying_so(checkpoint, rotated_image,
                                                               tmp_path, capsys):
    clipped, inside = tmp_path / "clipped", tmp_path / "inside"
    for box, prefix in ((["-50", "-50", "30", "100"], clipped), (["0", "0", "30", "80"], inside)):
        assert predict.main([str(rotated_image), "--box", *box, "--checkpoint", str(checkpoint),
                             "--out", str(prefix)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "box -50 -50 30 100: partly outside the 48x80 image, clipped to 0 0 30 80"
    for name in ("mask", "alpha", "cutout"):  # the very prompt the clipped box is
        assert (Path(f"{clipped}_{name}.png").read_bytes()
                == Path(f"{inside}_{name}.png").read_bytes())


def test_without_checkpoint_the_run_else_the_shipped_stand_in_is_said(rotated_image, tmp_path,
                                                                    monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no runs/sama/sama.pt here
    box = ["--box", "5", "10", "40", "70"]
    assert predict.main([str(rotated_image), *box, "--out", str(tmp_path / "a")]) == 0
    said = capsys.readouterr().out.splitlines()[0]
    assert said == (f"no --checkpoint and no runs/sama/sama.pt: the shipped stand-in "
                    f"{STANDIN_SAMA} (train.py makes your own)")
    (tmp_path / "runs" / "sama").mkdir(parents=True)
    shutil.copyfile(STANDIN_SAMA, tmp_path / "runs" / "sama" / "sama.pt")
    assert predict.main([str(rotated_image), *box, "--sam-checkpoint", str(STANDIN_SAM),
                         "--out", str(tmp_path / "b")]) == 0
    assert capsys.readouterr().out.splitlines()[0] == ("no --checkpoint: the training run's "
                                                       "runs/sama/sama.pt")
    assert predict.main([str(rotated_image), *box, "--onnx", "x", "--sam-checkpoint", "s"]) == 2
    assert capsys.readouterr().err == ("error: --sam-checkpoint: --onnx runs the exported graphs, "
                                       "not a checkpoint\n")


# ----------------------------------------------------------------------------------------------
# --everything: every object, PREFIX_objects.json and PREFIX_{i}_{mask,alpha,cutout}.png
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scene_image(tmp_path_factory) -> Path:
    from miniature.everything_study import TEST_SEEDS, scene

    path = tmp_path_factory.mktemp("scene") / "scene.png"
    Image.fromarray(scene(TEST_SEEDS[0])[0]).save(path)
    return path


@pytest.fixture
def coarse_grid(monkeypatch):
    """The stand-in's recorded thresholds on an 8 x 8 grid of points (a quick test)."""
    import predictor as predictor_module  # predict.py imports settings_for when it runs

    recorded = predictor_module.settings_for
    monkeypatch.setattr(predictor_module, "settings_for",
                        lambda sam: replace(recorded(sam), points_per_side=8))
    return predictor_module


def everything(image: Path, prefix: Path, *extra) -> int:
    return predict.main([str(image), "--everything", "--checkpoint", str(STANDIN_SAMA),
                         "--sam-checkpoint", str(STANDIN_SAM), "--out", str(prefix), *extra])


def test_everything_writes_the_list_and_each_objects_files(scene_image, tmp_path, coarse_grid,
                                                           capsys):
    prefix = tmp_path / "out" / "scene"
    assert everything(scene_image, prefix) == 0
    entries = json.loads(Path(f"{prefix}_objects.json").read_text())
    image = readers.load_image(scene_image)
    predictor = Predictor.from_checkpoint(STANDIN_SAMA, STANDIN_SAM, device=DEVICE)
    predictor.set_image(image)
    found = coarse_grid.find_objects(predictor, coarse_grid.settings_for(predictor.sam))
    assert len(entries) == len(found) >= 1
    written = {p.name for p in prefix.parent.iterdir()}
    assert written == {"scene_objects.json"} | {f"scene_{i}_{n}.png" for i in range(len(found))
                                                for n in ("mask", "alpha", "cutout")}
    refined = coarse_grid.refine(predictor, [f.box for f in found])  # one batched call
    for i, (entry, f, maps) in enumerate(zip(entries, found, refined)):
        assert entry["files"] == {n: f"scene_{i}_{n}.png" for n in ("mask", "alpha", "cutout")}
        np.testing.assert_array_equal(entry["box"], f.box)
        assert entry["predicted_iou"] == pytest.approx(f.predicted_iou, abs=1e-6)
        assert entry["stability_score"] == pytest.approx(f.stability, abs=1e-6)
        expected = frame.output_images(image, maps)  # SAMA refined from the object's box
        for name in ("mask", "alpha", "cutout"):
            np.testing.assert_array_equal(
                np.asarray(Image.open(prefix.parent / entry["files"][name])), expected[name])
    assert [e["predicted_iou"] for e in entries] == sorted(
        (e["predicted_iou"] for e in entries), reverse=True)
    assert f"({len(found)} objects" in capsys.readouterr().out


def test_everything_with_nothing_found_says_so_and_writes_an_empty_list(
        scene_image, tmp_path, coarse_grid, monkeypatch, capsys):
    recorded = coarse_grid.settings_for
    monkeypatch.setattr(coarse_grid, "settings_for",
                        lambda sam: replace(recorded(sam), pred_iou_thresh=1.0))
    assert everything(scene_image, tmp_path / "x") == 0
    assert json.loads((tmp_path / "x_objects.json").read_text()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x_objects.json"]
    out = [line for line in capsys.readouterr().out.splitlines() if "no object" in line]
    assert len(out) == 1 and "an empty list" in out[0]


@pytest.mark.parametrize("extra", [["--box", "5", "10", "40", "70"], ["--point", "3", "4"],
                                   ["--onnx", "onnx/x"]])
def test_everything_takes_no_prompt_and_no_onnx(scene_image, tmp_path, capsys, extra):
    assert everything(scene_image, tmp_path / "x", *extra) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {extra[0]}: not with --everything") and "\n" not in err
    assert not any(tmp_path.iterdir())


def test_everything_refuses_earlier_files_and_overwrite_removes_the_extra_ones(
        scene_image, tmp_path, coarse_grid, capsys):
    prefix = tmp_path / "scene"
    stale = tmp_path / "scene_99_mask.png"
    stale.write_bytes(b"an earlier run's")
    assert everything(scene_image, prefix) == 2
    assert "scene_99_mask.png: exists" in capsys.readouterr().err
    assert everything(scene_image, prefix, "--overwrite") == 0
    assert not stale.exists() and Path(f"{prefix}_objects.json").is_file()


def test_everything_writes_all_or_none(scene_image, tmp_path, coarse_grid, monkeypatch, capsys):
    def full_disk(text, path):
        raise outputs.WriteError(f"{path}: cannot write (No space left on device)")

    monkeypatch.setattr(predict, "write_text", full_disk)
    assert everything(scene_image, tmp_path / "scene") == 2
    assert "No space left" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


# ----------------------------------------------------------------------------------------------
# Many objects: --box repeated
# ----------------------------------------------------------------------------------------------

BOXES = [[5, 10, 40, 70], [0, 0, 30, 30], [10, 40, 47, 79]]


def test_repeated_boxes_write_each_objects_files_in_order(checkpoint, rotated_image, tmp_path,
                                                          capsys):
    """OUT_{i}_{mask,alpha,cutout}.png for i = 0, 1, 2, in the order given: each object's files
    are those of its own run (within one grey level: batched and single passes round apart), the
    batch's maps those of one Predictor call with the (3, 4) boxes."""
    prefix = tmp_path / "many"
    argv = [str(rotated_image), "--checkpoint", str(checkpoint), "--out", str(prefix)]
    assert predict.main([*argv, *(v for box in BOXES for v in ["--box", *map(str, box)])]) == 0
    said = capsys.readouterr().out.splitlines()
    assert [line.split(" (")[0] for line in said] == [
        f"wrote {prefix}_{i}_mask.png, {prefix}_{i}_alpha.png, {prefix}_{i}_cutout.png"
        for i in range(3)]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"many_{i}_{kind}.png" for i in range(3) for kind in ("mask", "alpha", "cutout"))
    predictor = Predictor(load_sama(checkpoint, device=DEVICE))
    image = readers.load_image(rotated_image)
    predictor.set_image(image)
    maps = predictor.predict(box=np.array(BOXES, dtype=float))
    for i, box in enumerate(BOXES):
        expected = frame.output_images(image, {name: m[i] for name, m in maps.items()})
        single = tmp_path / f"single{i}"
        assert predict.main([str(rotated_image), "--box", *map(str, box), "--checkpoint",
                             str(checkpoint), "--out", str(single)]) == 0
        for kind in ("mask", "alpha", "cutout"):
            written = np.asarray(Image.open(f"{prefix}_{i}_{kind}.png"))
            np.testing.assert_array_equal(written, expected[kind])
            alone = np.asarray(Image.open(f"{single}_{kind}.png")).astype(int)
            assert np.abs(written.astype(int) - alone).max() <= 1, (i, kind)
    first, second = (np.asarray(Image.open(f"{prefix}_{i}_alpha.png")) for i in (0, 1))
    assert not np.array_equal(first, second)  # the objects' files differ: a mix-up would show


def test_a_bad_box_among_many_is_named_and_nothing_written(checkpoint, rotated_image, tmp_path,
                                                           capsys):
    argv = [str(rotated_image), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "x")]
    for extra, line in (
        (["--box", "5", "10", "40", "70", "--box", "30", "10", "20", "70"],
         "error: --box 1 of 2: box 30 10 20 70: needs x1 > x0 and y1 > y0"),
        (["--box", "5", "10", "40", "70", "--box", "1", "1", "9", "9", "--box", "50", "1", "60",
          "9"], "error: --box 2 of 3: box 50 1 60 9: outside the 48x80 image"),
        (["--box", "5", "10", "40", "70", "--box", "1", "1", "9", "9", "--point", "3", "3"],
         "error: --point: with one --box only (each of 2 boxes is an object of its own)"),
    ):
        assert predict.main([*argv, *extra]) == 2
        assert capsys.readouterr().err == line + "\n"
    assert not any(tmp_path.iterdir())
    # a box partly outside: clipped, said with its number
    assert predict.main([*argv, "--box", "5", "10", "40", "70", "--box", "-5", "1", "9", "9"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == (
        "--box 1 of 2: box -5 1 9 9: partly outside the 48x80 image, clipped to 0 1 9 9")


def test_many_objects_are_written_all_or_none(checkpoint, rotated_image, tmp_path, monkeypatch,
                                              capsys):
    """A full disk on the fifth of six files: none of the six stays; an existing file of the set
    is refused before any work without --overwrite."""
    import errno

    real_save, calls = Image.Image.save, []

    def save(self, fp, *args, **kwargs):
        calls.append(fp)
        if len(calls) == 5:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", save)
    two = ["--box", "5", "10", "40", "70", "--box", "0", "0", "30", "30"]
    argv = [str(rotated_image), *two, "--checkpoint", str(checkpoint), "--out", str(tmp_path / "x")]
    assert predict.main(argv) == 2 and len(calls) == 5
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path / 'x_1_alpha.png'}: cannot write (No space left on "
                          "device); none of x_0_mask.png, x_0_alpha.png, x_0_cutout.png, "
                          "x_1_mask.png, x_1_alpha.png, x_1_cutout.png written")
    assert not any(tmp_path.iterdir())
    monkeypatch.undo()
    (tmp_path / "x_1_cutout.png").write_bytes(b"mine")
    assert predict.main(argv) == 2
    assert "x_1_cutout.png: exists; --overwrite replaces it" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x_1_cutout.png"]
