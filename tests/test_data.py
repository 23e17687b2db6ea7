"""Tests for data.py: layouts, robust loading, broken trees, samples and compositing."""

import io
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import data
import sam
from data import DataError

ROOT = Path(__file__).resolve().parents[1]
S = 128  # frame side for sample tests: small and fast


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("toy")
    data.make_toy(root, seed=0, n_train=8, n_val=4, n_test=2, n_fg=8, n_comp=8, n_aim500=4, n_bg=4)
    return root


def backgrounds(toy: Path) -> list[Path]:
    return data.image_files(toy / "backgrounds")


def save(array, path: Path, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kw)
    return path


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
# make-toy and the readers
# ----------------------------------------------------------------------------------------------


def test_make_toy_writes_every_layout(toy):
    assert len(data.dis_pairs(toy, "DIS-TR")) == 8
    assert len(data.dis_pairs(toy / "DIS5K", "DIS-VD")) == 4
    for k in range(1, 5):
        assert len(data.dis_pairs(toy, f"DIS-TE{k}")) == 2
    assert len(data.dis_pairs(toy, "DIS-TE")) == 8
    for pair in data.dis_pairs(toy, "DIS-TR"):
        assert (
            pair[0].suffix == ".jpg" and pair[1].suffix == ".png" and pair[0].stem == pair[1].stem
        )
    # --matting: the folder holding Combined_Dataset, or Combined_Dataset itself
    for matting in (toy / "AIM", toy / "AIM" / "Combined_Dataset"):
        assert len(data.aim_train_pairs(matting)) == 8
        assert len(data.composition1k_pairs(matting)) == 8
    assert {p[0].parent.parent.name for p in data.aim_train_pairs(toy / "AIM")} == {
        "Adobe-licensed images",
        "Other",
    }
    assert len(data.aim500_pairs(toy)) == len(data.aim500_pairs(toy / "AIM-500")) == 4
    assert len(backgrounds(toy)) == 4
    data.check_pairs(data.dis_pairs(toy, "DIS-TR"))
    data.check_pairs(data.aim_train_pairs(toy / "AIM"), matting=True)
    data.check_pairs(data.composition1k_pairs(toy / "AIM"), matting=True)
    data.check_pairs(data.aim500_pairs(toy), matting=True)


def test_make_toy_trimaps_and_determinism(toy, tmp_path):
    _, alpha, trimap = (data.load_mask(p) for p in data.composition1k_pairs(toy / "AIM")[0])
    assert set(np.unique(trimap)) <= {0, 128, 255}
    assert (trimap[(alpha > 0) & (alpha < 255)] == 128).all()  # every soft pixel is unknown
    assert (alpha[trimap == 255] == 255).all() and (alpha[trimap == 0] == 0).all()
    counts = dict(n_train=1, n_val=1, n_test=1, n_fg=1, n_comp=1, n_aim500=1, n_bg=1)
    data.make_toy(tmp_path / "a", seed=3, **counts)
    data.make_toy(tmp_path / "b", seed=3, **counts)
    files = sorted(
        p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file()
    )
    # DIS5K, AIM train, comp-1K (fg, alpha, merged, alpha_copy, trimap), AIM-500, bg
    assert len(files) == 6 * 2 + 2 + 5 + 3 + 1
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()


def test_thin_object_both_layouts(toy, tmp_path):
    pairs = data.dis_pairs(toy, "DIS-TR")
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
        assert len(data.thin_pairs(root, "train")) == 6
        assert len(data.thin_pairs(root, "test")) == 2
    (orig / "list" / "test.txt").write_text("missing.png\n")
    with pytest.raises(DataError, match="missing.png: listed in"):
        data.thin_pairs(orig, "test")


def test_evaluation_readers(tmp_path):
    image, mask = blob()
    trimap = data.make_trimap(mask)
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
    assert len(data.coift_pairs(tmp_path)) == len(data.coift_pairs(tmp_path / "COIFT")) == 1
    assert len(data.am2k_pairs(tmp_path / "AM-2K")) == 1
    assert [p[0].name for p in data.p3m500np_pairs(tmp_path / "P3M-10k")] == ["p_1.jpg", "p_2.jpg"]


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
    image = data.load_image(path)
    assert image.shape == (40, 20, 3)  # displayed upright: portrait
    red = image[:20] if red_side == "top" else image[20:]
    assert red[..., 0].mean() > 200 and red[..., 1].mean() < 50
    mask = np.zeros((20, 40), np.uint8)
    mask[:, :20] = 255
    m = data.load_mask(save(mask, tmp_path / "rot.png", exif=exif.tobytes()))  # masks too
    assert m.shape == (40, 20)
    assert (m[:20] if red_side == "top" else m[20:]).min() == 255


def test_image_modes(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    gray = rgb[..., 0]
    assert (data.load_image(save(gray, tmp_path / "g.png")) == gray[..., None]).all()
    pal = Image.fromarray(rgb).quantize(16)
    pal.save(tmp_path / "p.png")
    assert (data.load_image(tmp_path / "p.png") == np.asarray(pal.convert("RGB"))).all()
    rgba = np.concatenate([rgb, np.full((12, 16, 1), 7, np.uint8)], axis=2)
    assert (data.load_image(save(rgba, tmp_path / "a.PNG")) == rgb).all()
    Image.fromarray(gray.astype(np.uint16) * 257).save(tmp_path / "16.png")  # 16-bit grayscale
    assert Image.open(tmp_path / "16.png").mode.startswith("I")
    assert (data.load_image(tmp_path / "16.png") == gray[..., None]).all()
    assert data.load_image(save(rgb, tmp_path / "x.jpeg")).shape == (12, 16, 3)


def test_mask_modes(tmp_path):
    mask = np.zeros((12, 16), np.uint8)
    mask[3:9, 4:12] = 255
    mask[5, 6] = 128
    assert (data.load_mask(save(mask, tmp_path / "l.png")) == mask).all()
    Image.fromarray(mask.astype(np.uint16) * 257).save(tmp_path / "16.png")
    assert (data.load_mask(tmp_path / "16.png") == mask).all()  # 16-bit scaled to 0-255
    Image.fromarray(mask).convert("I").save(tmp_path / "i.tif")  # 32-bit holding 8-bit values
    assert (data.load_mask(tmp_path / "i.tif") == mask).all()
    red = np.stack([mask, np.zeros_like(mask), np.zeros_like(mask)], axis=2)
    assert (data.load_mask(save(red, tmp_path / "red.png")) == mask).all()  # max over channels
    pal = Image.fromarray(mask).convert("P")
    pal.save(tmp_path / "p.png")
    assert (data.load_mask(tmp_path / "p.png") == mask).all()
    Image.fromarray(mask > 128).save(tmp_path / "1bit.png")
    assert (data.load_mask(tmp_path / "1bit.png") == np.where(mask > 128, 255, 0)).all()
    la = np.stack([mask, np.full_like(mask, 255)], axis=2)
    assert (data.load_mask(save(la, tmp_path / "la.png")) == mask).all()
    transparent = np.concatenate([np.zeros((12, 16, 3), np.uint8), mask[..., None]], axis=2)
    assert (data.load_mask(save(transparent, tmp_path / "t.png")) == mask).all()  # matte as alpha


def test_upper_case_extensions_pair(tmp_path):
    image, mask = blob()
    tree(tmp_path / "COIFT", {"images": [("a.JPG", image), ("b.jpeg", image), ("c.PNG", image)],
                              "masks": [("a.PNG", mask), ("b.png", mask), ("c.png", mask)]})
    pairs = data.coift_pairs(tmp_path)
    assert [p[0].name for p in pairs] == ["a.JPG", "b.jpeg", "c.PNG"]
    data.check_pairs(pairs)


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
    return data.dis_pairs(root, "DIS-TR")


def test_missing_folder_shows_layout(tmp_path):
    msg = one_line_error(data.dis_pairs, tmp_path / "DIS5K", "DIS-TR")
    assert "DIS5K" in msg and "expected DIS5K/{DIS-TR,DIS-VD,DIS-TE1..4}/{im,gt}" in msg
    (tmp_path / "DIS5K" / "DIS-TR" / "im").mkdir(parents=True)
    assert "no DIS-VD/im folder; expected" in one_line_error(data.dis_pairs, tmp_path, "DIS-VD")
    msg = one_line_error(data.aim_train_pairs, tmp_path)
    assert "Training_set" in msg and "{fg,alpha}" in msg
    assert "or ThinObject5K/{images,masks}_{train,test}" in one_line_error(
        data.thin_pairs, tmp_path, "train"
    )
    assert "expected AIM-500/{original,mask,trimap}" in one_line_error(data.aim500_pairs, tmp_path)


def test_unpaired_files(tmp_path):
    pairs = dis_tree(tmp_path)
    pairs[0][1].unlink()
    assert str(pairs[0][0]) in one_line_error(data.dis_pairs, tmp_path, "DIS-TR")  # image, no mask
    save(blob()[1], pairs[0][1])
    extra = save(blob()[1], pairs[0][1].with_name("orphan.png"))
    assert str(extra) in one_line_error(data.dis_pairs, tmp_path, "DIS-TR")  # mask, no image


def test_empty_folder(tmp_path):
    for d in ("im", "gt"):
        (tmp_path / "DIS5K" / "DIS-TR" / d).mkdir(parents=True)
    (tmp_path / "DIS5K" / "DIS-TR" / "im" / ".DS_Store").write_text("x")  # ignored
    msg = one_line_error(data.dis_pairs, tmp_path, "DIS-TR")
    assert str(tmp_path / "DIS5K" / "DIS-TR" / "im") in msg and "no image files" in msg


def test_size_mismatch_names_both(tmp_path):
    pairs = dis_tree(tmp_path)
    save(np.full((30, 50), 255, np.uint8), pairs[1][1])
    msg = one_line_error(data.check_pairs, pairs)
    assert str(pairs[1][0]) in msg and str(pairs[1][1]) in msg and "50x30" in msg and "60x40" in msg


def test_truncated_and_garbage_files(tmp_path):
    pairs = dis_tree(tmp_path)
    image = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "JPEG")
    pairs[1][0].write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])  # cut in half
    msg = one_line_error(data.check_pairs, pairs)
    assert str(pairs[1][0]) in msg and "truncated" in msg
    pairs[1][0].write_bytes(b"this is not an image at all")
    assert str(pairs[1][0]) in one_line_error(data.check_pairs, pairs)
    assert str(pairs[1][0]) in one_line_error(data.load_image, pairs[1][0])


def test_empty_masks(tmp_path):
    pairs = dis_tree(tmp_path)
    save(np.full((40, 60), 100, np.uint8), pairs[0][1])  # nothing > 128: no object for a box
    msg = one_line_error(data.check_pairs, pairs)
    assert str(pairs[0][1]) in msg and "empty mask" in msg
    data.check_pairs(pairs, matting=True)  # as an alpha it is fine: alpha > 0
    with pytest.raises(DataError, match="empty mask"):
        data.SegmentationDataset(pairs, S)[0]
    save(np.zeros((40, 60), np.uint8), pairs[0][1])
    assert "empty alpha" in one_line_error(data.check_pairs, pairs, matting=True)


def test_cli_exit_code(tmp_path, toy, capsys):
    r = subprocess.run(
        [
            sys.executable,
            str(ROOT / "data.py"),
            "check",
            "dis5k",
            str(tmp_path / "nowhere"),
            "DIS-TR",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "expected DIS5K/" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    # in-process: one interpreter start is enough
    assert data.main(["check", "aim", str(toy / "AIM")]) == 0
    assert "ok: 8 aim pairs" in capsys.readouterr().out
    dis_tree(tmp_path)
    (tmp_path / "DIS5K" / "DIS-TR" / "gt" / "x0.png").unlink()
    assert data.main(["check", "dis5k", str(tmp_path), "DIS-TR"]) == 2
    assert "x0.jpg: no file named x0.*" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# Samples
# ----------------------------------------------------------------------------------------------


def check_sample(s: dict, size: int, matting: bool) -> None:
    shapes = {
        "image": (3, size, size),
        "image_local": (3, 2 * size, 2 * size),
        "target": (1, size, size),
        "valid": (1, size, size),
        "box": (4,),
        "points": (10, 2),
        "point_labels": (10,),
        "mask_input": (1, size // 4, size // 4),
        "is_matting": (),
    }
    assert {k: tuple(v.shape) for k, v in s.items()} == shapes
    assert all(
        v.dtype == torch.float32 for k, v in s.items() if k not in ("point_labels", "is_matting")
    )
    assert s["point_labels"].dtype == torch.int64 and (s["point_labels"] == 1).all()
    assert s["is_matting"].dtype == torch.bool and bool(s["is_matting"]) == matting
    # padding is exactly where the normalised frame is 0 in every channel (no pixel equals the mean)
    padding = (s["image"] == 0).all(0, keepdim=True)
    assert torch.equal(s["valid"] == 0, padding)
    # (2S, 2S): twice the content, +/-1 px of SAM's rounding
    local_valid = ~(s["image_local"] == 0).all(0)
    lh, lw = int(local_valid[:, 0].sum()), int(local_valid[0].sum())
    assert local_valid[:lh, :lw].all() and local_valid.sum() == lh * lw
    t = s["target"]
    assert t.min() >= 0 and t.max() <= 1 and (t[padding] == 0).all()
    region = t[0] > 0 if matting else t[0] > 0.5
    assert region.any()  # every sample has an object
    if not matting:
        assert set(t.unique().tolist()) <= {0.0, 1.0}
    # box: in the image, near the tight box (noise capped at 20 px of a 1024 frame)
    ys, xs = torch.nonzero(region, as_tuple=True)
    tight = torch.stack([xs.min(), ys.min(), xs.max(), ys.max()]).float()
    box = s["box"]
    ch, cw = int(s["valid"][0, :, 0].sum()), int(s["valid"][0, 0].sum())
    assert abs(lh - 2 * ch) <= 1 and abs(lw - 2 * cw) <= 1
    assert (
        box[0] <= box[2]
        and box[1] <= box[3]
        and box.min() >= 0
        and box[2] <= cw - 1
        and box[3] <= ch - 1
    )
    assert (box - tight).abs().max() <= 20 / 1024 * size + 1e-4
    # points on the object
    px, py = s["points"][:, 0].long(), s["points"][:, 1].long()
    assert (t[0, py, px] > (0 if matting else 0.5)).all()
    assert set(s["mask_input"].unique().tolist()) <= {-data.MASK_LOGIT, data.MASK_LOGIT}


def test_segmentation_samples(toy):
    ds = data.SegmentationDataset(data.dis_pairs(toy, "DIS-TR"), S)
    for i in range(len(ds)):
        check_sample(ds[i], S, matting=False)
    batch = torch.utils.data.default_collate([ds[0], ds[1]])
    assert batch["image"].shape == (2, 3, S, S) and batch["is_matting"].shape == (2,)


def test_matting_samples(toy):
    ds = data.MattingDataset(
        data.aim_train_pairs(toy / "AIM"), data.aim500_pairs(toy), backgrounds(toy), S
    )
    assert len(ds) == 8 + 4
    for i in range(len(ds)):
        s = ds[i]
        check_sample(s, S, matting=True)
        assert ((s["target"] > 0) & (s["target"] < 1)).any()  # soft alpha kept


def test_no_augment_is_sams_frame(toy):
    pairs = data.dis_pairs(toy, "DIS-VD")
    ds = data.SegmentationDataset(pairs, S, augment=False)
    for i, (im, gt) in enumerate(pairs):
        s = ds[i]
        assert torch.equal(s["image"], sam.image_to_frame(data.load_image(im), S))
        # as SamaPredictor
        assert torch.equal(s["image_local"], sam.image_to_frame(data.load_image(im), 2 * S))
        h, w = sam.preprocess_shape(*data.load_mask(gt).shape, S)
        assert s["valid"].sum() == h * w


def test_local_view_quadrants_align(toy):
    ds = data.SegmentationDataset(data.dis_pairs(toy, "DIS-TR"), S, seed=1)
    for i in range(4):
        s = ds[i]
        small = F.avg_pool2d(s["image_local"][None], 2)[0]  # (3, S, S)
        h = S // 2
        for m, (y, x) in enumerate([(0, 0), (0, h), (h, 0), (h, h)]):
            local, glob = small[:, y:y + h, x:x + h], s["image"][:, y:y + h, x:x + h]
            assert (local - glob).abs().mean() < 0.1, m
        # one pixel of misalignment is clearly worse: the test can tell
        assert (small[:, :, 1:] - s["image"][:, :, :-1]).abs().mean() > 2 * (
            small - s["image"]
        ).abs().mean()


def test_determinism(toy):
    pairs = data.dis_pairs(toy, "DIS-TR")
    a, b = data.SegmentationDataset(pairs, S, seed=5), data.SegmentationDataset(pairs, S, seed=5)
    for k, v in a[3].items():
        assert torch.equal(v, b[3][k]), k
        assert torch.equal(v, b[0, 3][k]), k  # i is epoch 0's sample i
    assert not torch.equal(a[3]["image"], b[1, 3]["image"])
    assert torch.equal(a[1, 3]["image"], b[1, 3]["image"])
    assert torch.equal(a[1, 3]["points"], b[1, 3]["points"])
    m = data.MattingDataset(data.aim_train_pairs(toy / "AIM"), [], backgrounds(toy), S, seed=5)
    assert torch.equal(m[2]["image"], m[2]["image"])


def test_object_cropped_out_is_resampled(tmp_path):
    image = np.full((200, 200, 3), 90, np.uint8)
    mask = np.zeros((200, 200), np.uint8)
    mask[190:, 190:] = 255  # a small object in a corner: most jitter crops lose it
    image[mask > 0] = 250
    path_im, path_gt = save(image, tmp_path / "a.jpg"), save(mask, tmp_path / "a.png")
    ds = data.SegmentationDataset([(path_im, path_gt)] * 30, 64)
    for i in range(30):
        assert ds[i]["target"].sum() > 0


# ----------------------------------------------------------------------------------------------
# Compositing (Adobe's rule), by hand
# ----------------------------------------------------------------------------------------------


def test_composite_by_hand():
    fg = np.full((2, 3, 3), 200, np.uint8)
    alpha = np.array([[0, 128, 255], [255, 64, 0]], np.uint8)
    bg = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)  # larger: cropped at (0, 0)
    out = data.composite(fg, alpha, bg)
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
    out = data.composite(fg, alpha, bg)
    up = np.asarray(Image.fromarray(bg).resize((math.ceil(4 * 2), math.ceil(2 * 2)), Image.BICUBIC))
    assert up.shape == (4, 8, 3) and (out == up[:4, :6]).all()
    # left of the background kept, not centred
    assert out[:, 0].max() < 20 and out[:, 5].min() > 180


# ----------------------------------------------------------------------------------------------
# Any source size / aspect ratio
# ----------------------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(h=st.integers(4, 400), w=st.integers(4, 400), size=st.sampled_from([64, 128]),
       augment=st.booleans(), matting=st.booleans(), seed=st.integers(0, 2**16))
def test_any_source_shape(h, w, size, augment, matting, seed):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), np.uint8)
    y0, x0 = rng.integers(0, h // 2 + 1), rng.integers(0, w // 2 + 1)
    mask[y0: y0 + max(1, h // 3), x0: x0 + max(1, w // 3)] = 255
    s = data.make_sample(image, mask, size, np.random.default_rng(seed), augment, matting)
    check_sample(s, size, matting)
