"""Tests for data.py: training samples (views, targets, prompts) and the datasets."""

import numpy as np
import torch
import torch.nn.functional as F
from conftest import backgrounds, save
from hypothesis import given, settings
from hypothesis import strategies as st

import data
import readers
import sam

S = 128  # frame side for sample tests: small and fast


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
    }
    assert {k: tuple(v.shape) for k, v in s.items()} == shapes
    assert all(
        v.dtype == torch.float32 for k, v in s.items() if k != "point_labels"
    )
    assert s["point_labels"].dtype == torch.int64 and (s["point_labels"] == 1).all()
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
    ds = data.SegmentationDataset(readers.dis_pairs(toy, "DIS-TR"), S)
    for i in range(len(ds)):
        check_sample(ds[i], S, matting=False)
    batch = torch.utils.data.default_collate([ds[0], ds[1]])
    assert batch["image"].shape == (2, 3, S, S) and batch["target"].shape == (2, 1, S, S)


def test_matting_samples(toy):
    ds = data.MattingDataset(
        readers.aim_train_pairs(toy / "AIM"), readers.aim500_pairs(toy), backgrounds(toy), S
    )
    assert len(ds) == 8 + 4
    for i in range(len(ds)):
        s = ds[i]
        check_sample(s, S, matting=True)
        assert ((s["target"] > 0) & (s["target"] < 1)).any()  # soft alpha kept


def test_no_augment_is_sams_frame(toy):
    pairs = readers.dis_pairs(toy, "DIS-VD")
    ds = data.SegmentationDataset(pairs, S, augment=False)
    for i, (im, gt) in enumerate(pairs):
        s = ds[i]
        assert torch.equal(s["image"], sam.image_to_frame(readers.load_image(im), S))
        # as SamaPredictor
        assert torch.equal(s["image_local"], sam.image_to_frame(readers.load_image(im), 2 * S))
        h, w = sam.preprocess_shape(*readers.load_mask(gt).shape, S)
        assert s["valid"].sum() == h * w


def test_local_view_quadrants_align(toy):
    ds = data.SegmentationDataset(readers.dis_pairs(toy, "DIS-TR"), S, seed=1)
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
    pairs = readers.dis_pairs(toy, "DIS-TR")
    a, b = data.SegmentationDataset(pairs, S, seed=5), data.SegmentationDataset(pairs, S, seed=5)
    for k, v in a[3].items():
        assert torch.equal(v, b[3][k]), k
        assert torch.equal(v, b[0, 3][k]), k  # i is epoch 0's sample i
    assert not torch.equal(a[3]["image"], b[1, 3]["image"])
    assert torch.equal(a[1, 3]["image"], b[1, 3]["image"])
    assert torch.equal(a[1, 3]["points"], b[1, 3]["points"])
    m = data.MattingDataset(readers.aim_train_pairs(toy / "AIM"), [], backgrounds(toy), S, seed=5)
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
