"""Tests for readers.py: layouts, robust loading, broken trees, the check command, compositing and
trimaps, and that it reads without torch."""

import io
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import save
from PIL import Image

import data
import readers
from readers import DataError

ROOT = Path(__file__).resolve().parents[1]
S = 128  # frame side for the one dataset sample below


def tree(root: Path, folders: dict[str, list[tuple[str, np.ndarray]]]) -> Path:
    """Write {folder: [(file name, array)]} under root."""
    for folder, files in folders.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for name, array in files:
            save(array, root / folder / name)
    return root


def blob(h=40, w=60) -> tuple[np.ndarray, np.ndarray]:
    image = np.full((h, w, 3), 60, np.uint8)
    mask = np.zeros((h, w), np.uint8)
    mask[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = 255
    image[mask > 0] = (200, 40, 40)
    return image, mask



# ----------------------------------------------------------------------------------------------
# The readers
# ----------------------------------------------------------------------------------------------


def test_thin_object_both_layouts(toy, tmp_path):
    pairs = readers.dis_pairs(toy, "DIS-TR")
    orig, repack = tmp_path / "orig" / "ThinObject5K", tmp_path / "repack" / "ThinObject5K"
    for d in (
        "images",
        "masks",
        "list",
        "images_train",
        "masks_train",
        "images_test",
        "masks_test",
    ):
        (orig if d in ("images", "masks", "list") else repack).joinpath(d).mkdir(
            parents=True, exist_ok=True
        )
    for i, (im, gt) in enumerate(pairs):
        split = "train" if i < 6 else "test"
        shutil.copy(im, orig / "images")
        shutil.copy(gt, orig / "masks")
        with open(orig / "list" / f"{split}.txt", "a") as f:
            f.write(gt.name + "\n")
        shutil.copy(im, repack / f"images_{split}")
        shutil.copy(gt, repack / f"masks_{split}")
    for root in (orig, orig.parent, repack, repack.parent):
        assert len(readers.thin_pairs(root, "train")) == 6
        assert len(readers.thin_pairs(root, "test")) == 2
    (orig / "list" / "test.txt").write_text("missing.png\n")
    with pytest.raises(DataError, match="missing.png: listed in"):
        readers.thin_pairs(orig, "test")


def test_evaluation_readers(tmp_path):
    image, mask = blob()
    trimap = readers.make_trimap(mask)
    tree(tmp_path / "COIFT", {"images": [("a.jpg", image)], "masks": [("a.png", mask)]})
    tree(
        tmp_path / "AM-2K" / "validation",
        {
            "original": [("m_1.jpg", image)],
            "mask": [("m_1.png", mask)],
            "trimap": [("m_1.png", trimap)],
        },
    )
    tree(
        tmp_path / "P3M-10k" / "validation" / "P3M-500-NP",
        {
            "original_image": [("p_1.jpg", image), ("p_2.jpg", image)],
            "mask": [("p_1.png", mask), ("p_2.png", mask)],
            "trimap": [("p_1.png", trimap), ("p_2.png", trimap)],
        },
    )
    assert len(readers.coift_pairs(tmp_path)) == len(readers.coift_pairs(tmp_path / "COIFT")) == 1
    assert len(readers.am2k_pairs(tmp_path / "AM-2K")) == 1
    p3m = readers.p3m500np_pairs(tmp_path / "P3M-10k")
    assert [p[0].name for p in p3m] == ["p_1.jpg", "p_2.jpg"]


# ----------------------------------------------------------------------------------------------
# Robust loading
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("orientation, red_side", [(6, "top"), (8, "bottom")])
def test_exif_orientation(tmp_path, orientation, red_side):
    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:, :20] = (255, 0, 0)  # left half red, as stored
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = save(stored, tmp_path / "rot.JPG", exif=exif.tobytes(), quality=95)
    image = readers.load_image(path)
    assert image.shape == (40, 20, 3)  # displayed upright: portrait
    red = image[:20] if red_side == "top" else image[20:]
    assert red[..., 0].mean() > 200 and red[..., 1].mean() < 50
    mask = np.zeros((20, 40), np.uint8)
    mask[:, :20] = 255
    m = readers.load_mask(save(mask, tmp_path / "rot.png", exif=exif.tobytes()))  # masks too
    assert m.shape == (40, 20)
    assert (m[:20] if red_side == "top" else m[20:]).min() == 255


def test_image_modes(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    gray = rgb[..., 0]
    assert (readers.load_image(save(gray, tmp_path / "g.png")) == gray[..., None]).all()
    pal = Image.fromarray(rgb).quantize(16)
    pal.save(tmp_path / "p.png")
    assert (readers.load_image(tmp_path / "p.png") == np.asarray(pal.convert("RGB"))).all()
    rgba = np.concatenate([rgb, np.full((12, 16, 1), 7, np.uint8)], axis=2)
    assert (readers.load_image(save(rgba, tmp_path / "a.PNG")) == rgb).all()
    Image.fromarray(gray.astype(np.uint16) * 257).save(tmp_path / "16.png")  # 16-bit grayscale
    assert Image.open(tmp_path / "16.png").mode.startswith("I")
    assert (readers.load_image(tmp_path / "16.png") == gray[..., None]).all()
    assert readers.load_image(save(rgb, tmp_path / "x.jpeg")).shape == (12, 16, 3)


def test_mask_modes(tmp_path):
    mask = np.zeros((12, 16), np.uint8)
    mask[3:9, 4:12] = 255
    mask[5, 6] = 128
    assert (readers.load_mask(save(mask, tmp_path / "l.png")) == mask).all()
    Image.fromarray(mask.astype(np.uint16) * 257).save(tmp_path / "16.png")
    assert (readers.load_mask(tmp_path / "16.png") == mask).all()  # 16-bit scaled to 0-255
    Image.fromarray(mask).convert("I").save(tmp_path / "i.tif")  # 32-bit holding 8-bit values
    assert (readers.load_mask(tmp_path / "i.tif") == mask).all()
    red = np.stack([mask, np.zeros_like(mask), np.zeros_like(mask)], axis=2)
    assert (readers.load_mask(save(red, tmp_path / "red.png")) == mask).all()  # max over channels
    pal = Image.fromarray(mask).convert("P")
    pal.save(tmp_path / "p.png")
    assert (readers.load_mask(tmp_path / "p.png") == mask).all()
    Image.fromarray(mask > 128).save(tmp_path / "1bit.png")
    assert (readers.load_mask(tmp_path / "1bit.png") == np.where(mask > 128, 255, 0)).all()
    la = np.stack([mask, np.full_like(mask, 255)], axis=2)
    assert (readers.load_mask(save(la, tmp_path / "la.png")) == mask).all()
    transparent = np.concatenate([np.zeros((12, 16, 3), np.uint8), mask[..., None]], axis=2)
    # a matte saved as transparency
    assert (readers.load_mask(save(transparent, tmp_path / "t.png")) == mask).all()


def test_upper_case_extensions_pair(tmp_path):
    image, mask = blob()
    tree(tmp_path / "COIFT", {"images": [("a.JPG", image), ("b.jpeg", image), ("c.PNG", image)],
                              "masks": [("a.PNG", mask), ("b.png", mask), ("c.png", mask)]})
    pairs = readers.coift_pairs(tmp_path)
    assert [p[0].name for p in pairs] == ["a.JPG", "b.jpeg", "c.PNG"]
    readers.check_pairs(pairs)


# ----------------------------------------------------------------------------------------------
# Broken trees: one-line DataErrors naming the file
# ----------------------------------------------------------------------------------------------


def one_line_error(fn, *args, **kw) -> str:
    with pytest.raises(DataError) as e:
        fn(*args, **kw)
    msg = str(e.value)
    assert "\n" not in msg and isinstance(e.value, ValueError)
    return msg


def dis_tree(root: Path, n=2) -> list[tuple[Path, Path]]:
    image, mask = blob()
    for split in ("DIS-TR",):
        tree(root / "DIS5K" / split, {"im": [(f"x{i}.jpg", image) for i in range(n)],
                                      "gt": [(f"x{i}.png", mask) for i in range(n)]})
    return readers.dis_pairs(root, "DIS-TR")


def test_missing_folder_shows_layout(tmp_path):
    msg = one_line_error(readers.dis_pairs, tmp_path / "DIS5K", "DIS-TR")
    assert "DIS5K" in msg and "expected DIS5K/{DIS-TR,DIS-VD,DIS-TE1..4}/{im,gt}" in msg
    (tmp_path / "DIS5K" / "DIS-TR" / "im").mkdir(parents=True)
    assert "no DIS-VD/im folder; expected" in one_line_error(readers.dis_pairs, tmp_path, "DIS-VD")
    msg = one_line_error(readers.aim_train_pairs, tmp_path)
    assert "Training_set" in msg and "{fg,alpha}" in msg
    assert "or ThinObject5K/{images,masks}_{train,test}" in one_line_error(
        readers.thin_pairs, tmp_path, "train"
    )
    msg = one_line_error(readers.aim500_pairs, tmp_path)
    assert "expected AIM-500/{original,mask,trimap}" in msg


def test_unpaired_files(tmp_path):
    pairs = dis_tree(tmp_path)
    pairs[0][1].unlink()
    # an image without its mask
    assert str(pairs[0][0]) in one_line_error(readers.dis_pairs, tmp_path, "DIS-TR")
    save(blob()[1], pairs[0][1])
    extra = save(blob()[1], pairs[0][1].with_name("orphan.png"))
    assert str(extra) in one_line_error(readers.dis_pairs, tmp_path, "DIS-TR")  # mask, no image


def test_empty_folder(tmp_path):
    for d in ("im", "gt"):
        (tmp_path / "DIS5K" / "DIS-TR" / d).mkdir(parents=True)
    (tmp_path / "DIS5K" / "DIS-TR" / "im" / ".DS_Store").write_text("x")  # ignored
    msg = one_line_error(readers.dis_pairs, tmp_path, "DIS-TR")
    assert str(tmp_path / "DIS5K" / "DIS-TR" / "im") in msg and "no image files" in msg


def test_size_mismatch_names_both(tmp_path):
    pairs = dis_tree(tmp_path)
    save(np.full((30, 50), 255, np.uint8), pairs[1][1])
    msg = one_line_error(readers.check_pairs, pairs)
    assert str(pairs[1][0]) in msg and str(pairs[1][1]) in msg and "50x30" in msg and "60x40" in msg


def test_truncated_and_garbage_files(tmp_path):
    pairs = dis_tree(tmp_path)
    image = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "JPEG")
    pairs[1][0].write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])  # cut in half
    msg = one_line_error(readers.check_pairs, pairs)
    assert str(pairs[1][0]) in msg and "truncated" in msg
    pairs[1][0].write_bytes(b"this is not an image at all")
    assert str(pairs[1][0]) in one_line_error(readers.check_pairs, pairs)
    assert str(pairs[1][0]) in one_line_error(readers.load_image, pairs[1][0])


def test_empty_masks(tmp_path):
    pairs = dis_tree(tmp_path)
    save(np.full((40, 60), 100, np.uint8), pairs[0][1])  # nothing > 128: no object for a box
    msg = one_line_error(readers.check_pairs, pairs)
    assert str(pairs[0][1]) in msg and "empty mask" in msg
    readers.check_pairs(pairs, matting=True)  # as an alpha it is fine: alpha > 0
    with pytest.raises(DataError, match="empty mask"):
        data.SegmentationDataset(pairs, S)[0]
    save(np.zeros((40, 60), np.uint8), pairs[0][1])
    assert "empty alpha" in one_line_error(readers.check_pairs, pairs, matting=True)


def test_cli_exit_code(tmp_path, toy, capsys):
    r = subprocess.run(
        [
            sys.executable,
            str(ROOT / "readers.py"),
            "check",
            "DIS-TR",
            str(tmp_path / "nowhere"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "expected DIS5K/" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    # in-process: one interpreter start is enough
    assert readers.main(["check", "aim", str(toy / "AIM")]) == 0
    assert "ok: 8 aim pairs" in capsys.readouterr().out
    dis_tree(tmp_path)
    (tmp_path / "DIS5K" / "DIS-TR" / "gt" / "x0.png").unlink()
    assert readers.main(["check", "DIS-TR", str(tmp_path)]) == 2
    assert "x0.jpg: no file named x0.*" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# Compositing (Adobe's rule), by hand, and trimaps
# ----------------------------------------------------------------------------------------------


def test_composite_by_hand():
    fg = np.full((2, 3, 3), 200, np.uint8)
    alpha = np.array([[0, 128, 255], [255, 64, 0]], np.uint8)
    bg = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)  # larger: cropped at (0, 0)
    out = readers.composite(fg, alpha, bg)
    a = alpha[..., None] / 255.0
    assert out.dtype == np.uint8 and out.shape == (2, 3, 3)
    assert (out == np.floor(a * 200 + (1 - a) * bg[:2, :3])).all()
    assert (out[0, 0] == bg[0, 0]).all() and (out[0, 2] == 200).all()
    # smaller background: upscaled bicubically by max(w/bw, h/bh) = max(6/4, 4/2) = 2 to 8x4,
    # cropped at (0, 0)
    fg, alpha = np.zeros((4, 6, 3), np.uint8), np.zeros((4, 6), np.uint8)
    bg = np.array(
        [[[0] * 3, [0] * 3, [200] * 3, [200] * 3], [[0] * 3] * 2 + [[200] * 3] * 2], np.uint8
    )
    out = readers.composite(fg, alpha, bg)
    up = np.asarray(Image.fromarray(bg).resize((math.ceil(4 * 2), math.ceil(2 * 2)), Image.BICUBIC))
    assert up.shape == (4, 8, 3) and (out == up[:4, :6]).all()
    # left of the background kept, not centred
    assert out[:, 0].max() < 20 and out[:, 5].min() > 180


# ----------------------------------------------------------------------------------------------
# Without torch: a prediction path without torch reads images with readers.load_image
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("module, imports", [("readers", True), ("data", False)])
def test_readers_imports_no_torch(module, imports):
    """readers imports with torch blocked; data (which needs torch) does not: the check can fail."""
    code = f"import sys; sys.modules['torch'] = None; import {module}"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert (r.returncode == 0) == imports, r.stderr
