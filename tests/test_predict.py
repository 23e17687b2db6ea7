"""Tests for predict.py: three images at the input's displayed size and orientation, the cutout's
alpha equal to alpha.png, and one-line errors for bad prompts."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import data
import predict
from load_sam_weights import load_sam, load_sama, sam_identity, save_sama
from sam import SAM_VARIANTS, Sam
from sama import SAMA, TASKS, SamaPredictor

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # the device predict.py picks: same numbers
RAW_H, RAW_W = 48, 80  # as stored; EXIF orientation 6 (rotate 90 degrees) displays it 80 high, 48 wide


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
    image = data.load_image(rotated_image)
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
    np.testing.assert_array_equal(cut[..., :3], image)  # the colours, in the displayed orientation
    assert set(np.unique(mask).tolist()) <= {0, 255}

    # the same prompt through SamaPredictor directly gives the same maps (mask: probability > 0.5)
    ref = SamaPredictor(load_sama(checkpoint, device=DEVICE))
    ref.set_image(image)
    ref_logits, ref_alpha, _ = ref.predict(np.array([[20.0, 40.0]]), np.array([1]),
                                           np.array(box, dtype=float), return_logits=True)
    ref_mask = torch.sigmoid(torch.from_numpy(ref_logits)).numpy() > 0.5
    np.testing.assert_array_equal(mask, ref_mask.astype(np.uint8) * 255)
    np.testing.assert_array_equal(alpha, np.round(ref_alpha * 255).astype(np.uint8))


def test_a_matting_only_model_masks_with_its_alpha(checkpoint, rotated_image, tmp_path):
    ckpt = torch.load(checkpoint, weights_only=True)
    ckpt["tasks"] = ["matting"]  # the same weights, recorded as trained for matting only
    matting_only = tmp_path / "sama-matting.pt"
    torch.save(ckpt, matting_only)
    prefix = tmp_path / "cut"
    box = [5, 10, 40, 70]
    assert predict.main([str(rotated_image), "--box", *map(str, box),
                         "--checkpoint", str(matting_only), "--out", str(prefix)]) == 0
    ref = SamaPredictor(load_sama(checkpoint, device=DEVICE))
    ref.set_image(data.load_image(rotated_image))
    seg_mask, ref_alpha, _ = ref.predict(box=np.array(box, dtype=float))
    alpha_mask = ref_alpha > 0.5
    assert not np.array_equal(seg_mask, alpha_mask)  # the heads disagree: the test tells them apart
    written = np.asarray(Image.open(f"{prefix}_mask.png"))
    np.testing.assert_array_equal(written, alpha_mask.astype(np.uint8) * 255)


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
    ["--box", "5", "10", "60", "70"],         # x1 beyond the displayed width (48)
    ["--box", "-1", "10", "40", "70"],        # negative
    ["--point", "10", "20", "30"],            # odd number of values
    ["--neg-point", "5"],                     # odd number of values
    ["--point", "10", "90"],                  # y beyond the displayed height (80)
    [],                                       # no prompt at all
])
def test_bad_prompts_exit_2_with_one_line(checkpoint, rotated_image, tmp_path, capsys, prompt):
    prefix = tmp_path / "x"
    assert predict.main([str(rotated_image), *prompt, "--checkpoint", str(checkpoint), "--out", str(prefix)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert not list(tmp_path.glob("x_*.png"))


def test_unreadable_image_and_checkpoint_exit_2(checkpoint, rotated_image, tmp_path, capsys):
    assert predict.main([str(tmp_path / "none.jpg"), "--point", "1", "1", "--checkpoint", str(checkpoint)]) == 2
    assert "none.jpg" in capsys.readouterr().err
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"nope")
    assert predict.main([str(rotated_image), "--point", "1", "1", "--checkpoint", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert "bad.pt" in err and "\n" not in err
