"""Training samples for SAMA: one geometric view of an image and its mask or alpha rendered at S
and 2S, HQ-SAM's noisy prompts and augmentation (make_sample), and the training datasets
(segmentation, and matting with AIM's foregrounds composited on the fly). Files are read by
readers.py; the toy datasets are written by miniature/synthetic.py
(`python -m miniature.synthetic make-toy DIR`).

The object, for prompts: gt > 128 for segmentation masks, alpha > 0 for mattes (faint hair is
inside the box); mask_to_box gives the tight box (inclusive pixel indices, as HQ-SAM).

A training sample (shape notation as in sam.py, S = frame side):

    key           shape          dtype    what it holds
    image         (3, S, S)      float32  SAM's frame: normalised, zero-padded bottom / right
    image_local   (3, 2S, 2S)    float32  the same view rendered at twice the resolution; its four
                                          S x S quadrants are the MVLE local views
    target        (1, S, S)      float32  gt > 128 (segmentation) or alpha / 255 (matting); 0 on
                                          padding
    valid         (1, S, S)      float32  1 on image pixels, 0 on padding
    box           (4,)           float32  noisy GT box, xyxy frame pixels
    points        (10, 2)        float32  positive points, xy frame pixels
    point_labels  (10,)          int64    ones (every point positive)
    mask_input    (1, S/4, S/4)  float32  noisy GT mask as SAM mask-input logits (+/-MASK_LOGIT)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from readers import DataError, composite, load_image, load_mask
from sam import normalize_and_pad

NUM_POINTS = 10  # HQ-SAM samples 10 positive points per object
BOX_NOISE = 0.1  # box corner noise: std = 10% of the box side (SAM's training recipe) ...
BOX_NOISE_MAX = 20 / 1024  # ... capped at 20 px of a 1024 frame, scaled with the frame
MASK_LOGIT = 10.0  # mask input logits: +10 inside, -10 outside (sigmoid 0.99995 / 0.00005)
JITTER = (0.1, 2.0)  # large-scale jitter: longest side = U(0.1, 2.0) x S (HQ-SAM)
JITTER_TRIES = 10  # resample a jitter that cropped the object out at most this many times


# ----------------------------------------------------------------------------------------------
# Samples: one geometric view rendered at S and 2S, targets and prompts
# ----------------------------------------------------------------------------------------------


def mask_to_box(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool -> (4,) float32 tight box xyxy, inclusive pixel indices (as HQ-SAM's
    masks_to_boxes)."""
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max(), ys.max()], dtype=np.float32)


def _fit_view(h: int, w: int, size: int) -> tuple:
    """SAM's view: the whole image, longest side = size (rounded as sam.preprocess_shape)."""
    scale = size / max(h, w)
    sh, sw = max(1, int(h * scale + 0.5)), max(1, int(w * scale + 0.5))
    return sh, sw, 0, 0, sh, sw


def _jitter_view(h: int, w: int, size: int, rng: np.random.Generator) -> tuple:
    """Large-scale jitter as HQ-SAM: longest side = U(0.1, 2) x size; a larger result is cropped at
    a random offset, a smaller one sits at the top-left and the rest is padding (as SAM's frame)."""
    scale = rng.uniform(*JITTER) * size / max(h, w)
    sh, sw = max(1, round(h * scale)), max(1, round(w * scale))
    oy, ox = (
        int(rng.integers(0, max(sh - size, 0) + 1)),
        int(rng.integers(0, max(sw - size, 0) + 1)),
    )
    return sh, sw, oy, ox, min(size, sh - oy), min(size, sw - ox)


def _render(img: Image.Image, view: tuple) -> np.ndarray:
    """The view's content: the source resized to sh x sw, then cropped to ch x cw at (oy, ox).

    Returns (ch, cw[, 3]) uint8. PIL resizes the source box directly (bilinear, antialiased when
    shrinking), so a view and its double (all six numbers x2) sample exactly the same region.
    """
    sh, sw, oy, ox, ch, cw = view
    w, h = img.size
    box = (ox * w / sw, oy * h / sh, (ox + cw) * w / sw, (oy + ch) * h / sh)
    return np.asarray(img.resize((cw, ch), Image.BILINEAR, box=box))


def _frame(rgb: np.ndarray, size: int) -> torch.Tensor:
    """(h, w, 3) uint8 -> (3, size, size) float32 normalised and zero-padded
    (sam.normalize_and_pad)."""
    return normalize_and_pad(torch.from_numpy(np.array(rgb)).permute(2, 0, 1).float(), size)


def _noisy_box(
    box: np.ndarray, ch: int, cw: int, size: int, rng: np.random.Generator
) -> np.ndarray:
    """Each coordinate moved by N(0, (10% of the box side)^2), capped at 20 px of a 1024 frame, then
    clipped to the image content. (HQ-SAM computes a noisy box but feeds the clean one; SAM's own
    training adds this noise, and a box prompt drawn by hand is never tight.)"""
    bw, bh = box[2] - box[0] + 1, box[3] - box[1] + 1
    std = BOX_NOISE * np.array([bw, bh, bw, bh])
    noise = np.clip(rng.normal(0.0, 1.0, 4) * std, -BOX_NOISE_MAX * size, BOX_NOISE_MAX * size)
    b = box + noise
    b = np.clip(b, 0, [cw - 1, ch - 1, cw - 1, ch - 1])
    x0, x1 = sorted(b[0::2])
    y0, y1 = sorted(b[1::2])
    return np.array([x0, y0, x1, y1], dtype=np.float32)


def _sample_points(region: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(NUM_POINTS, 2) xy pixel indices drawn uniformly from region (with replacement only if it is
    smaller than NUM_POINTS). SAM's prompt encoder adds the +0.5 pixel-centre shift itself."""
    ys, xs = np.nonzero(region)
    idx = rng.choice(len(xs), NUM_POINTS, replace=len(xs) < NUM_POINTS)
    return np.stack([xs[idx], ys[idx]], axis=1).astype(np.float32)


def _noisy_mask_input(target: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """(1, S, S) target -> (1, S/4, S/4) mask-input logits, as HQ-SAM's masks_noise (from Mask
    Transfiner): the target at S/4 gets N(0, 1) noise where it differs from its own 8x-coarser
    version (the boundary regions), then is thresholded at 0.5.

    Given as +/-MASK_LOGIT logits: SAM's mask input is the previous step's logits, and a saturated
    +/-10 says "confident" in that scale (HQ-SAM feeds 0 / 255, where the background 0 is an
    undecided logit rather than a negative one).
    """
    m = F.avg_pool2d(target[None], 4)  # (1, 1, S/4, S/4)
    n = m.shape[-1]
    coarse = F.interpolate(
        F.interpolate(m, size=(n // 8, n // 8), mode="area"), size=(n, n), mode="bilinear"
    )
    boundary = ((m - coarse).abs() >= 0.01).float()
    noise = torch.from_numpy(rng.standard_normal(m.shape).astype(np.float32))
    noisy = (m + noise * boundary) > 0.5
    return torch.where(noisy, MASK_LOGIT, -MASK_LOGIT)[0]  # (1, S/4, S/4)


def make_sample(image: np.ndarray, mask: np.ndarray, size: int, rng: np.random.Generator,
                augment: bool, matting: bool) -> dict:
    """One training sample (see the module docstring) from a source image and its mask / alpha.

    image (H, W, 3) uint8, mask (H, W) uint8. The geometry (flip, jitter) is decided once and the
    source is rendered from it at S (global frame, targets) and 2S (local views).
    The object region is gt > 128 for segmentation and alpha > 0 for matting; the box comes from it
    (for matting: alpha > 0, so faint hair is inside the box). Points come from the target > 0.5
    (the matte's core; for a matte with no alpha > 0.5, from alpha > 0).
    A jitter that crops the whole object out is redrawn (up to JITTER_TRIES times), then the sample
    falls back to SAM's unjittered view; an object thinner than a frame pixel keeps its strongest
    pixels. So every sample has an object.
    """
    if not (mask > (0 if matting else 128)).any():
        raise DataError("empty mask: nothing to prompt (check_pairs finds these before training)")
    h, w = mask.shape
    img, msk = Image.fromarray(image), Image.fromarray(mask)
    if augment and rng.random() < 0.5:
        img, msk = ImageOps.mirror(img), ImageOps.mirror(msk)

    # all tries are drawn up front: the random stream does not depend on the image content
    views = [_jitter_view(h, w, size, rng) for _ in range(JITTER_TRIES)] if augment else []
    fit = _fit_view(h, w, size)
    for view in views + [fit]:
        m = _render(msk, view).astype(np.float32)  # (ch, cw) 0-255
        region = m > 0 if matting else m > 128
        if region.any():
            break
    if not region.any():  # structure thinner than a frame pixel in the fitted view
        region = m >= m.max()
    t = m / 255.0 if matting else region.astype(np.float32)
    ch, cw = t.shape
    core = t > 0.5
    points = _sample_points(core if core.any() else region, rng)

    target = torch.zeros(1, size, size)
    target[0, :ch, :cw] = torch.from_numpy(t)
    valid = torch.zeros(1, size, size)
    valid[0, :ch, :cw] = 1.0
    # the local views: the same view at twice the resolution. SAM's unjittered view is recomputed at
    # 2S exactly as sam.image_to_frame(image, 2S) does at inference (it can differ from twice the
    # S view by one pixel of rounding); a jittered view is doubled exactly.
    local_view = _fit_view(h, w, 2 * size) if view is fit else tuple(2 * v for v in view)
    return {
        "image": _frame(_render(img, view), size),
        "image_local": _frame(_render(img, local_view), 2 * size),
        "target": target,
        "valid": valid,
        "box": torch.from_numpy(_noisy_box(mask_to_box(region), ch, cw, size, rng)),
        "points": torch.from_numpy(points),
        "point_labels": torch.ones(NUM_POINTS, dtype=torch.int64),
        "mask_input": _noisy_mask_input(target, rng),
    }


# ----------------------------------------------------------------------------------------------
# The datasets
# ----------------------------------------------------------------------------------------------


class SegmentationDataset(torch.utils.data.Dataset):
    """(image, mask) pairs -> samples (see make_sample). The key is (epoch e, index i), or i for
    epoch 0; the sample is drawn from np.random.default_rng([seed, e, i]), so a resumed or
    distributed run sees exactly the same data."""

    def __init__(self, pairs, image_size: int, augment: bool = True, seed: int = 0):
        self.pairs, self.image_size, self.augment, self.seed = (
            list(pairs),
            image_size,
            augment,
            seed,
        )

    def __len__(self) -> int:
        return len(self.pairs)

    def _load(self, key) -> tuple[int, np.random.Generator, np.ndarray, np.ndarray, Path]:
        """The key's index i, random generator, image (H, W, 3), mask or alpha (H, W) and the
        mask's path."""
        epoch, i = key if isinstance(key, tuple) else (0, key)
        image_path, mask_path = self.pairs[i][:2]
        image, mask = load_image(image_path), load_mask(mask_path)
        if image.shape[:2] != mask.shape:
            raise DataError(
                f"{mask_path}: size {mask.shape[1]}x{mask.shape[0]} differs from {image_path} "
                f"({image.shape[1]}x{image.shape[0]})"
            )
        return i, np.random.default_rng([self.seed, epoch, i]), image, mask, mask_path

    def __getitem__(self, key) -> dict:
        _, rng, image, mask, mask_path = self._load(key)
        try:
            return make_sample(image, mask, self.image_size, rng, self.augment, matting=False)
        except DataError as e:
            raise DataError(f"{mask_path}: {e}") from None


class MattingDataset(SegmentationDataset):
    """AIM foregrounds composited on the fly, then natural (image, alpha) pairs such as AIM-500.

    Indices [0, len(fg_alpha_pairs)) are composites: foreground i over a background drawn at random
    from `backgrounds` (image paths: --backgrounds DIR, or the segmentation training images), or
    from its own backgrounds where its tuple carries them third (Distinctions-646's list). With
    augment, the background is first cut to a random crop (random flip, 50-100% of the largest crop
    with the foreground's aspect ratio) so one background gives many; then Adobe's rule (composite).
    The rest are natural pairs used as they are (tuples may carry a trimap, ignored here).
    """

    def __init__(self, fg_alpha_pairs, natural_pairs, backgrounds, image_size: int,
                 augment: bool = True, seed: int = 0):
        super().__init__(list(fg_alpha_pairs) + list(natural_pairs), image_size, augment, seed)
        self.num_fg = len(fg_alpha_pairs)
        self.backgrounds = list(backgrounds)
        if any(len(p) < 3 for p in fg_alpha_pairs) and not self.backgrounds:
            raise DataError("matting: foregrounds to composite but no background images")

    def _background(self, h: int, w: int, rng: np.random.Generator, pool) -> np.ndarray:
        bg = load_image(pool[rng.integers(len(pool))])
        if not self.augment:
            return bg
        bh, bw = bg.shape[:2]
        s = rng.uniform(0.5, 1.0) * min(bh / h, bw / w)  # crop = s * (h, w), inside the background
        ch, cw = max(1, min(bh, round(s * h))), max(1, min(bw, round(s * w)))
        y, x = rng.integers(0, bh - ch + 1), rng.integers(0, bw - cw + 1)
        bg = bg[y:y + ch, x:x + cw]
        return bg[:, ::-1].copy() if rng.random() < 0.5 else bg

    def __getitem__(self, key) -> dict:
        i, rng, image, alpha, alpha_path = self._load(key)
        if i < self.num_fg:
            pool = self.pairs[i][2] if len(self.pairs[i]) > 2 else self.backgrounds
            image = composite(image, alpha, self._background(*alpha.shape, rng, pool))
        try:
            return make_sample(image, alpha, self.image_size, rng, self.augment, matting=True)
        except DataError as e:
            raise DataError(f"{alpha_path}: {e}") from None
