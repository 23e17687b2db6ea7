"""Scoring a split with a predictor, prompted from the GT: evaluate.py's loop and training's
validation (train.py).

Protocol (DESIGN.md, "Data and evaluation"): one prompt per image taken from the GT, one output
(no multimask), every prediction written as a 0-255 PNG at the GT's resolution and scored from that
PNG with metrics.py, so the scores equal metrics.py run on the written files.

    segmentation (DIS5K)   box of gt > 128        maxF, wF, MAE, Sm, meanEm (probability map);
                                                  mIoU, mBIoU, MAE_binary, FP, FN (binary mask)
    points (COIFT, Thin)   1/3/5/10 GT points     mIoU, mBIoU per point count (binary mask)
    matting                box of alpha > 0       SAD, MSE (x1e3), Grad, Conn; Composition-1K on
                           (RefMatte-RW100: > 127) the trimaps' unknown region, the others on the
                                                  whole image (Distinctions-646 also on the
                                                  unknown band of a trimap made from its alpha)

Like for like (prediction.Predictor): SAMA and SAM are each scored through the same two maps, the
probability map (SAMA: sigmoid(seg logits); SAM: sigmoid of its mask logits) for the DIS scores,
which sweep thresholds over it, and the binary mask (SAMA: the probability above the threshold its
checkpoint records, 0.5 if none; SAM: logits > 0) for the mask scores; every score names its map
(metrics.SEG_MAPS). A model trained for one task is scored through the head it trained: its alpha
as the segmentation map, or its segmentation probability as the alpha.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import Optional

import numpy as np
from tqdm import tqdm

import data
import readers
from frame import NonFiniteOutput
from metrics import MattingMetrics, SegMetrics, boundary_iou, mask_iou, prediction_to_uint8
from outputs import save_png
from prediction import Predictor
from sama import SAMA

POINT_COUNTS = (1, 3, 5, 10)  # HQ-SAM's / the paper's Figure 2 point study
POINT_SEED = 0  # points of an image: rng seeded with (POINT_SEED, crc32 of the stem)
SEG_KEYS = ("maxF", "wF", "MAE", "Sm", "meanEm", "mIoU", "mBIoU", "MAE_binary", "FP", "FN")
MATTING_KEYS = ("SAD", "MSE", "Grad", "Conn")
BAND = "_unknown"  # Distinctions-646's second column: SAD_unknown, ... on the trimap's unknown band
PROMPTS = {
    "seg": "GT box: tight box of gt > 128 (inclusive pixel indices, data.mask_to_box)",
    "matting": "GT box: tight box of alpha > {above} (inclusive pixel indices, data.mask_to_box)",
    "points": f"{'/'.join(map(str, POINT_COUNTS))} positive points drawn uniformly without "
              f"replacement from the pixels of gt > 128 (numpy default_rng((seed {POINT_SEED}, "
              f"crc32 of the stem)), nested: the k-point prompt is the first k of the 10), pixel "
              f"indices as xy",
}


# ----------------------------------------------------------------------------------------------
# Training's validation: scored in memory, nothing written
# ----------------------------------------------------------------------------------------------


# the mask thresholds validation chooses among (DESIGN.md, "SAMA's mask threshold")
THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)


def score_segmentation(model: SAMA, tasks, pairs, progress: bool = True) -> dict:
    """GT-box prompt per image (box of gt > 128), SAMA's segmentation probability and mask (at the
    default threshold) scored at the GT's resolution through the heads it trained (`tasks`; see
    Predictor): SegMetrics results (maxF, ..., n). Leaves the model in eval mode."""
    return validate_segmentation(model, tasks, pairs, progress)[0]


def validate_segmentation(model: SAMA, tasks, pairs, progress: bool = True) -> tuple[dict, dict]:
    """score_segmentation's scores and, from the same predictions, the mean IoU of the mask at
    each of THRESHOLDS ({threshold: mIoU}): train.py's validation, which picks the threshold
    (pick_threshold) that sama.pt records."""
    predictor, seg = Predictor(model, tasks), SegMetrics()
    ious = {t: [] for t in THRESHOLDS}
    for image_path, gt_path in tqdm(
        pairs, desc="validate", disable=not progress, dynamic_ncols=True
    ):
        image, gt = readers.load_image(image_path), readers.load_mask(gt_path)
        predictor.set_image(image)
        out = predictor.predict(box=data.mask_to_box(gt > 128))
        seg.update(out["seg"], gt, out["mask"])
        for t, found in ious.items():
            found.append(mask_iou(out["seg"] > t, gt > 128))
    return seg.results(), {t: float(np.mean(found)) for t, found in ious.items()}


def pick_threshold(miou: dict) -> float:
    """The threshold of the highest validation mIoU; of equal ones, the nearest to 0.5."""
    return max(miou, key=lambda t: (miou[t], -abs(t - 0.5)))


def score_matting(model: SAMA, tasks, items, progress: bool = True) -> dict:
    """Box of alpha > 0 per item, SAMA's alpha (through the heads it trained) scored on the whole
    image: MattingMetrics results (SAD, MSE, Grad, Conn, region, n). An item is an (image, alpha)
    pair, or (foreground, alpha, background) composited by Adobe's rule. Used for validation on a
    plain folder's held-out mattes by train.py; leaves the model in eval mode."""
    predictor, matting = Predictor(model, tasks), MattingMetrics()
    for files in tqdm(items, desc="validate", disable=not progress, dynamic_ncols=True):
        image, alpha = readers.load_image(files[0]), readers.load_mask(files[1])
        if len(files) > 2:
            image = readers.composite(image, alpha, readers.load_image(files[2]))
        predictor.set_image(image)
        matting.update(predictor.predict(box=data.mask_to_box(alpha > 0))["alpha"], alpha)
    return matting.results()


# ----------------------------------------------------------------------------------------------
# Prompts, files
# ----------------------------------------------------------------------------------------------


def sample_points(gt: np.ndarray, stem: str, n: int = max(POINT_COUNTS)) -> np.ndarray:
    """(k, 2) xy pixel indices of k = min(n, #fg) distinct pixels of gt > 128, uniformly drawn;
    deterministic per image stem (independent of the dataset's order and of earlier images)."""
    fg = np.flatnonzero(gt > 128)
    rng = np.random.default_rng((POINT_SEED, zlib.crc32(os.fsencode(stem))))
    picked = fg[rng.choice(len(fg), size=min(n, len(fg)), replace=False)]
    return np.stack([picked % gt.shape[1], picked // gt.shape[1]], axis=1).astype(np.float64)


def probability_to_grey(x: np.ndarray) -> np.ndarray:
    """A mask or a probability map as its 0-255 grey PNG holds it: bool -> 0 / 255, float in
    [0, 1] -> round(x * 255)."""
    return x.astype(np.uint8) * 255 if x.dtype == bool else prediction_to_uint8(x)


def read_png(path: Path, shape: tuple) -> Optional[np.ndarray]:
    """The PNG as a (H, W) uint8 map if it exists, decodes fully and has the expected shape, else
    None."""
    if not path.is_file():
        return None
    try:
        a = readers.load_mask(path)
    except readers.DataError:
        return None
    return a if a.shape == tuple(shape) else None


# ----------------------------------------------------------------------------------------------
# Scoring one split: predictions written as PNGs, scored from the PNGs
# ----------------------------------------------------------------------------------------------


def score_split(
    split_name: str, split, pairs, out: Path, predictor: Predictor, resume: bool,
    progress: bool = True,
) -> tuple[dict, dict]:
    """Predict what is missing in `out` (everything without `resume`), then score every PNG
    written. `split` is the split's entry in evaluate.py's registry (its kind, box_above,
    trimap_region, band_column); `split_name` names it in the progress bar and errors.

    Returns the scores: SegMetrics results (DIS), mIoU@k / mBIoU@k (points), MattingMetrics results;
    and every image's scores ({key: [value per image, in the order of `pairs`]}, SegMetrics /
    MattingMetrics per_image()).
    """
    folders = {"seg": ["pred", "mask"], "points": [f"pred-{k}pt" for k in POINT_COUNTS],
               "matting": ["pred"]}[split.kind]
    stems = [Path(p[1]).stem for p in pairs]
    if len(set(stems)) != len(stems):
        dup = next(s for s in stems if stems.count(s) > 1)
        raise readers.DataError(
            f"two GT files with the stem {dup!r} in {split_name}: predictions would overwrite"
        )

    seg, matting, band = SegMetrics(), MattingMetrics(), MattingMetrics()
    iou = {k: [] for k in POINT_COUNTS}
    biou = {k: [] for k in POINT_COUNTS}
    for files, stem in tqdm(
        list(zip(pairs, stems)), desc=split_name, disable=not progress, dynamic_ncols=True
    ):
        gt = readers.load_mask(files[1])
        paths = [out / f / f"{stem}.png" for f in folders]
        preds = [read_png(p, gt.shape) for p in paths] if resume else [None] * len(paths)
        if any(p is None for p in preds):
            image = readers.load_image(files[0])
            if image.shape[:2] != gt.shape:
                raise readers.DataError(
                    f"{files[0]}: size {image.shape[1]}x{image.shape[0]} differs from "
                    f"{files[1]} ({gt.shape[1]}x{gt.shape[0]})"
                )
            predictor.set_image(image)
            try:
                maps = predict_split(predictor, split.kind, gt, stem, split.box_above)
            except NonFiniteOutput as e:  # never written as a black PNG and scored
                raise NonFiniteOutput(f"{files[0]}: {e}") from None
            for k, m in enumerate(maps):
                if preds[k] is None:
                    save_png(probability_to_grey(m), paths[k])
                    preds[k] = read_png(paths[k], gt.shape)  # score what was written, read back
        # scores always come from the PNGs, so a resumed run equals a fresh one
        if split.kind == "seg":
            seg.update(preds[0], gt, preds[1] >= 128)
        elif split.kind == "points":
            for k, pred in zip(POINT_COUNTS, preds):
                iou[k].append(mask_iou(pred >= 128, gt > 128))
                biou[k].append(boundary_iou(pred >= 128, gt > 128))
        else:
            scored_trimap = split.trimap_region or split.band_column
            trimap = readers.load_mask(files[2]) if scored_trimap else None
            matting.update(preds[0], gt, trimap if split.trimap_region else None)
            if split.band_column:
                band.update(preds[0], gt, trimap)

    if split.kind == "seg":
        return seg.results(), seg.per_image()
    if split.kind == "matting":
        if not split.band_column:
            return matting.results(), matting.per_image()
        second = band.results()
        return ({**matting.results(), **{k + BAND: second[k] for k in (*MATTING_KEYS, "region")}},
                {**matting.per_image(), **{k + BAND: v for k, v in band.per_image().items()}})
    per_image = {**{f"mIoU@{k}": iou[k] for k in POINT_COUNTS},
                 **{f"mBIoU@{k}": biou[k] for k in POINT_COUNTS}}
    return {**{k: float(np.mean(v)) for k, v in per_image.items()}, "n": len(pairs)}, per_image


def predict_split(predictor: Predictor, kind: str, gt: np.ndarray, stem: str,
                  box_above: int = 0) -> list[np.ndarray]:
    """The maps written for one image: [seg, mask] (box), [alpha] (box of alpha > box_above),
    [mask @ k points]."""
    if kind == "seg":
        out = predictor.predict(box=data.mask_to_box(gt > 128))
        return [out["seg"], out["mask"]]
    if kind == "matting":
        return [predictor.predict(box=data.mask_to_box(gt > box_above))["alpha"]]
    points = sample_points(gt, stem)
    return [
        predictor.predict(points[:k], np.ones(len(points[:k]), dtype=np.int64))["mask"]
        for k in POINT_COUNTS
    ]
