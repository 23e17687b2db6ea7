"""Evaluate SAMA (or plain SAM, the baseline row) on the paper's benchmarks, prompted from the GT.

    python evaluate.py --split DIS-VD                       # runs/sama/sama.pt, DIS5K in ./DIS5K
    python evaluate.py --split DIS-TE --model sam           # plain SAM on the same box prompts
    python evaluate.py --split Composition-1K --matting ./AIM
    python evaluate.py --split COIFT --coift ./COIFT        # 1, 3, 5 and 10 positive points
    python evaluate.py --split Distinctions-646 --backgrounds ./VOC2012/JPEGImages
    python evaluate.py --split RefMatte-RW100 --refmatte ./RefMatte_RW_100
    python evaluate.py --folder ./my_test                   # your own DIR/{im, gt} or {im, alpha}
    python evaluate.py --split DIS-VD --no-mvle             # an ablation: runs/sama-no-mvle/sama.pt

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

Distinctions-646's test set is composited once (data.d646_test_triples: each foreground over the
20 images its Test/bg_test.txt names in --backgrounds, Adobe's rule) into Test/composite. Every
scored trimap must hold only 0 / 128 / 255 with an unknown region.

Like for like (prediction.Predictor): SAMA and SAM are each scored through the same two maps, the
probability map (SAMA: sigmoid(seg logits); SAM: sigmoid of its mask logits) for the DIS scores,
which sweep thresholds over it, and the binary mask (SAMA: the probability above the threshold its
checkpoint records, 0.5 if none; SAM: logits > 0) for the mask scores; every score names its map
(metrics.SEG_MAPS). A model trained for one task (train.py --tasks, recorded in its checkpoint) is
scored through the head it trained: its alpha as the segmentation map, or its segmentation
probability as the alpha. Outputs in --out: pred/{stem}.png (the probability map or the alpha),
mask/{stem}.png (the binary mask, segmentation splits), pred-{k}pt/ (point splits: the masks),
metrics.json, per_image.json (every image's scores, for the study's bootstrap), results.md (our row
beside the paper's), vis.png with --vis N. --resume reuses every readable PNG of the right size,
once settings.json shows the same weights (SHA-256 of the files), split, prompt and maps made them.
Before any prediction every file of the split is decoded and checked (sizes, an object in the GT).
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np
import torch
from PIL import Image, ImageDraw
from tqdm import tqdm

import data
import outputs
from load_sam_weights import (
    DEFAULT_THRESHOLD,
    CheckpointError,
    load_sam,
    load_sama,
)
from metrics import (MattingMetrics, SegMetrics, boundary_iou, column, mask_iou,
                     prediction_to_uint8)
from outputs import WriteError
from prediction import keep_freed_cpu_memory
from prediction import NonFiniteOutput, Predictor, save_png
from sam import Sam, compile_image_encoder
from sama import SAMA, TASK_CHOICES

POINT_COUNTS = (1, 3, 5, 10)  # HQ-SAM's / the paper's Figure 2 point study
POINT_SEED = 0  # points of an image: rng seeded with (POINT_SEED, crc32 of the stem)


# ----------------------------------------------------------------------------------------------
# Splits: where the pairs come from, how they are prompted and scored
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    kind: str  # "seg" (box, DIS metrics), "points" (1..10 points, IoU / boundary IoU), "matting"
    root_option: str  # the command-line option holding the dataset root
    reader: Callable  # root -> [(image, gt[, trimap])]
    trimap_region: bool = False  # matting: score only the trimap's unknown region
    band_column: bool = False  # matting: the whole image, and the trimap's unknown band beside it
    options: tuple = ()  # further command-line options the reader takes, as keyword arguments
    box_above: int = 0  # matting: the prompt is the box of alpha > box_above


SPLITS = {
    **{s: Split("seg", "data", lambda root, s=s: data.dis_pairs(root, s))
       for s in ("DIS-VD", "DIS-TE1", "DIS-TE2", "DIS-TE3", "DIS-TE4", "DIS-TE")},
    "COIFT": Split("points", "coift", data.coift_pairs),
    "ThinObject-5K": Split("points", "thin", lambda root: data.thin_pairs(root, "test")),
    "Composition-1K": Split("matting", "matting", data.composition1k_pairs, trimap_region=True),
    "AIM-500": Split("matting", "aim500", data.aim500_pairs),
    "AM-2K": Split("matting", "am2k", data.am2k_pairs),
    "P3M-500-NP": Split("matting", "p3m", data.p3m500np_pairs),
    "Distinctions-646": Split("matting", "d646", data.d646_test_triples, band_column=True,
                              options=("backgrounds",)),
    "RefMatte-RW100": Split("matting", "refmatte", data.refmatte_rw100_pairs, box_above=127),
    "folder-masks": Split("seg", "folder", data.folder_masks),
    "folder-mattes": Split("matting", "folder", data.folder_mattes),
}

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
# The paper's numbers (copied from the paper's text; MSE in our units, x1e3)
# ----------------------------------------------------------------------------------------------

DIS = ("maxF", "wF", "MAE", "Sm", "meanEm")
FULL = {"model": "sama", "use_mvle": True, "use_local_adapter": True, "tasks": ["seg", "matting"]}


def _row(label: str, table: str, keys: tuple, values: tuple, **config) -> dict:
    return {"label": label, "table": table, "scores": dict(zip(keys, values)), "config": config}


PAPER = {
    "DIS-VD": [
        _row("SAM", "Table 1", DIS, (0.835, 0.782, 0.069, 0.808, 0.889), model="sam"),
        _row("SAMA", "Table 1", DIS, (0.942, 0.885, 0.021, 0.930, 0.962), **FULL),
        _row(
            "SAMA without MVLE and Local-Adapter",
            "Table 3",
            DIS,
            (0.872, 0.849, 0.038, 0.868, 0.932),
            **{**FULL, "use_mvle": False, "use_local_adapter": False},
        ),
        _row(
            "SAMA without MVLE",
            "Table 3",
            DIS,
            (0.893, 0.876, 0.029, 0.912, 0.944),
            **{**FULL, "use_mvle": False},
        ),
        _row(
            "SAMA without Local-Adapter",
            "Table 3",
            DIS,
            (0.882, 0.869, 0.027, 0.903, 0.942),
            **{**FULL, "use_local_adapter": False},
        ),
        _row(
            "SAMA trained on segmentation only",
            "Table 5",
            DIS,
            (0.917, 0.876, 0.027, 0.916, 0.946),
            **{**FULL, "tasks": ["seg"]},
        ),
        _row(
            "SAMA trained on matting only",
            "Table 5",
            DIS,
            (0.682, 0.709, 0.071, 0.807, 0.855),
            **{**FULL, "tasks": ["matting"]},
        ),
    ],
    "DIS-TE1": [
        _row("SAM", "Table 1", DIS, (0.838, 0.807, 0.047, 0.843, 0.805), model="sam"),
        _row("SAMA", "Table 1", DIS, (0.940, 0.911, 0.012, 0.947, 0.977), **FULL),
    ],
    "DIS-TE2": [
        _row("SAM", "Table 1", DIS, (0.803, 0.758, 0.081, 0.792, 0.863), model="sam"),
        _row("SAMA", "Table 1", DIS, (0.932, 0.904, 0.019, 0.934, 0.962), **FULL),
    ],
    "DIS-TE3": [
        _row("SAM", "Table 1", DIS, (0.773, 0.724, 0.094, 0.761, 0.848), model="sam"),
        _row("SAMA", "Table 1", DIS, (0.920, 0.889, 0.032, 0.924, 0.949), **FULL),
    ],
    "DIS-TE4": [
        _row("SAM", "Table 1", DIS, (0.677, 0.634, 0.162, 0.697, 0.762), model="sam"),
        _row("SAMA", "Table 1", DIS, (0.917, 0.857, 0.041, 0.897, 0.937), **FULL),
    ],
    "DIS-TE": [
        _row("SAM", "Table 1", DIS, (0.773, 0.731, 0.096, 0.773, 0.845), model="sam"),
        _row("SAMA", "Table 1", DIS, (0.926, 0.897, 0.026, 0.925, 0.956), **FULL),
    ],
    # Table 2 prints MSE x1e3 already (2.9)
    "Composition-1K": [_row("SAMA", "Table 2", ("SAD", "MSE"), (22.8, 2.9), **FULL)],
    "Distinctions-646": [_row("SAMA", "Table 2", ("SAD", "MSE"), (22.4, 2.2), **FULL)],
    # Table 5 prints MSE unscaled (0.0100 = 10.0 x1e3)
    "RefMatte-RW100": [
        _row(
            "SAMA trained on segmentation only",
            "Table 5",
            ("SAD", "MSE"),
            (62.70, 54.0),
            **{**FULL, "tasks": ["seg"]},
        ),
        _row(
            "SAMA trained on matting only",
            "Table 5",
            ("SAD", "MSE"),
            (34.25, 21.0),
            **{**FULL, "tasks": ["matting"]},
        ),
        _row("SAMA trained on both tasks", "Table 5", ("SAD", "MSE"), (25.69, 10.0), **FULL),
    ],
    # Table 4 prints MSE unscaled (0.003 = 3.0 x1e3) and names the set "P3M-500" (taken as
    # P3M-500-NP)
    "AM-2K": [
        _row(
            "SAMA without MVLE and Local-Adapter",
            "Table 4",
            ("SAD", "MSE"),
            (19.79, 28.0),
            **{**FULL, "use_mvle": False, "use_local_adapter": False},
        ),
        _row(
            "SAMA without MVLE",
            "Table 4",
            ("SAD", "MSE"),
            (12.74, 7.0),
            **{**FULL, "use_mvle": False},
        ),
        _row(
            "SAMA without Local-Adapter",
            "Table 4",
            ("SAD", "MSE"),
            (13.12, 11.0),
            **{**FULL, "use_local_adapter": False},
        ),
        _row("SAMA", "Table 4", ("SAD", "MSE"), (8.04, 3.0), **FULL),
    ],
    "P3M-500-NP": [
        _row(
            "SAMA without MVLE and Local-Adapter",
            "Table 4",
            ("SAD", "MSE"),
            (16.06, 34.6),
            **{**FULL, "use_mvle": False, "use_local_adapter": False},
        ),
        _row(
            "SAMA without MVLE",
            "Table 4",
            ("SAD", "MSE"),
            (12.15, 5.7),
            **{**FULL, "use_mvle": False},
        ),
        _row(
            "SAMA without Local-Adapter",
            "Table 4",
            ("SAD", "MSE"),
            (13.09, 6.3),
            **{**FULL, "use_local_adapter": False},
        ),
        _row("SAMA", "Table 4", ("SAD", "MSE"), (9.08, 2.8), **FULL),
    ],
}
SINGLE_TASK_NOTE = ("A model trained for one task is scored through the head it trained (the paper "
                    "does not say how it scored Table 5's other-task cells): trained for matting "
                    "only, its alpha is the segmentation probability map; trained for segmentation "
                    "only, its probability sigmoid(seg logits) is the alpha.")
PAPER_NOTES = {
    "DIS-VD": SINGLE_TASK_NOTE,
    "Distinctions-646": (
        f"Scored on the whole image, as the comparison rows of Table 2 (ViTMatte's evaluation) "
        f"score Distinctions-646; the columns marked {BAND} score the unknown band of "
        f"data.make_trimap(alpha, {data.D646_TRIMAP_RADIUS}) (alpha > 0 dilated by "
        f"{data.D646_TRIMAP_RADIUS} px, minus alpha == 255 eroded by {data.D646_TRIMAP_RADIUS} "
        f"px; the set ships no trimaps). Composites: foreground k (in name order) over the images "
        f"named 20 k .. 20 k + 19 of the archive's Test/{data.D646_TEST_LIST}, Adobe's rule."
    ),
    "RefMatte-RW100": (
        "SAMA takes boxes and points, not text: each image is prompted with the box of its alpha "
        "(alpha > 127, as MAM), not with its referring expressions, and scored on the whole "
        "image. Table 5 prints MSE unscaled (e.g. 0.0100); shown here x1e3 like ours. "
        + SINGLE_TASK_NOTE
    ),
    "COIFT": "The paper gives COIFT's point study only as a plot (Figure 2), no numbers in its "
             "text.",
    "ThinObject-5K": "The paper reports no ThinObject-5K numbers.",
    "AIM-500": "The paper reports no AIM-500 numbers.",
    "AM-2K": "Table 4 prints MSE unscaled (e.g. 0.003); shown here x1e3 like ours.",
    "P3M-500-NP": 'Table 4 prints MSE unscaled (e.g. 0.0028) for "P3M-500"; shown here x1e3 like '
                  'ours.',
}


def score_segmentation(model: SAMA, tasks, pairs, progress: bool = True) -> dict:
    """GT-box prompt per image (box of gt > 128), SAMA's segmentation probability and mask (at the
    default threshold) scored at the GT's resolution through the heads it trained (`tasks`; see
    Predictor): SegMetrics results (maxF, ..., n). Used for validation by train.py; leaves the
    model in eval mode."""
    predictor, seg = Predictor(model, tasks), SegMetrics()
    for image_path, gt_path in tqdm(
        pairs, desc="validate", disable=not progress, dynamic_ncols=True
    ):
        image, gt = data.load_image(image_path), data.load_mask(gt_path)
        predictor.set_image(image)
        out = predictor.predict(box=data.mask_to_box(gt > 128))
        seg.update(out["seg"], gt, out["mask"])
    return seg.results()


def score_matting(model: SAMA, tasks, items, progress: bool = True) -> dict:
    """Box of alpha > 0 per item, SAMA's alpha (through the heads it trained) scored on the whole
    image: MattingMetrics results (SAD, MSE, Grad, Conn, region, n). An item is an (image, alpha)
    pair, or (foreground, alpha, background) composited by Adobe's rule. Used for validation on a
    plain folder's held-out mattes by train.py; leaves the model in eval mode."""
    predictor, matting = Predictor(model, tasks), MattingMetrics()
    for files in tqdm(items, desc="validate", disable=not progress, dynamic_ncols=True):
        image, alpha = data.load_image(files[0]), data.load_mask(files[1])
        if len(files) > 2:
            image = data.composite(image, alpha, data.load_image(files[2]))
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
    rng = np.random.default_rng((POINT_SEED, zlib.crc32(stem.encode())))
    picked = fg[rng.choice(len(fg), size=min(n, len(fg)), replace=False)]
    return np.stack([picked % gt.shape[1], picked // gt.shape[1]], axis=1).astype(np.float64)


def to_uint8(x: np.ndarray) -> np.ndarray:
    """A map as its 0-255 PNG holds it: bool -> 0 / 255, float in [0, 1] -> round(x * 255)."""
    return x.astype(np.uint8) * 255 if x.dtype == bool else prediction_to_uint8(x)


def read_png(path: Path, shape: tuple) -> Optional[np.ndarray]:
    """The PNG as a (H, W) uint8 map if it exists, decodes fully and has the expected shape, else
    None."""
    if not path.is_file():
        return None
    try:
        a = data.load_mask(path)
    except data.DataError:
        return None
    return a if a.shape == tuple(shape) else None


def write_text(text: str, path: Path) -> None:
    """Written whole or not at all (outputs.write_text)."""
    outputs.write_text(text, path)


# ----------------------------------------------------------------------------------------------
# Evaluating one split
# ----------------------------------------------------------------------------------------------


def evaluate(
    split_name: str, pairs, out: Path, predictor: Predictor, resume: bool, progress: bool = True
) -> tuple[dict, dict]:
    """Predict what is missing (everything without --resume), then score every PNG written.

    Returns the scores: SegMetrics results (DIS), mIoU@k / mBIoU@k (points), MattingMetrics results;
    and every image's scores ({key: [value per image, in the order of `pairs`]}, SegMetrics /
    MattingMetrics per_image()).
    """
    split = SPLITS[split_name]
    folders = {"seg": ["pred", "mask"], "points": [f"pred-{k}pt" for k in POINT_COUNTS],
               "matting": ["pred"]}[split.kind]
    stems = [Path(p[1]).stem for p in pairs]
    if len(set(stems)) != len(stems):
        dup = next(s for s in stems if stems.count(s) > 1)
        raise data.DataError(
            f"two GT files with the stem {dup!r} in {split_name}: predictions would overwrite"
        )

    seg, matting, band = SegMetrics(), MattingMetrics(), MattingMetrics()
    iou = {k: [] for k in POINT_COUNTS}
    biou = {k: [] for k in POINT_COUNTS}
    for files, stem in tqdm(
        list(zip(pairs, stems)), desc=split_name, disable=not progress, dynamic_ncols=True
    ):
        gt = data.load_mask(files[1])
        paths = [out / f / f"{stem}.png" for f in folders]
        preds = [read_png(p, gt.shape) for p in paths] if resume else [None] * len(paths)
        if any(p is None for p in preds):
            image = data.load_image(files[0])
            if image.shape[:2] != gt.shape:
                raise data.DataError(
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
                    save_png(to_uint8(m), paths[k])
                    preds[k] = read_png(paths[k], gt.shape)  # score what was written, read back
        # scores always come from the PNGs, so a resumed run equals a fresh one
        if split.kind == "seg":
            seg.update(preds[0], gt, preds[1] >= 128)
        elif split.kind == "points":
            for k, pred in zip(POINT_COUNTS, preds):
                iou[k].append(mask_iou(pred >= 128, gt > 128))
                biou[k].append(boundary_iou(pred >= 128, gt > 128))
        else:
            trimap = data.load_mask(files[2]) if split.trimap_region or split.band_column else None
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


# ----------------------------------------------------------------------------------------------
# Contact sheet: image with the prompt | GT | SAM | SAMA mask | SAMA alpha | error map
# ----------------------------------------------------------------------------------------------

VIS_CELL = 192  # pixels per side of every cell of the contact sheet
VIS_COLUMNS = ("image + prompt", "GT", "SAM mask", "SAMA mask", "SAMA alpha",
               "error: red too much, blue missing")
VIS_HEADER = 18  # pixels of the column titles


def fit_cell(panel: Image.Image) -> Image.Image:
    """The panel scaled to fit a VIS_CELL square, aspect kept, centred on light grey."""
    scale = VIS_CELL / max(panel.size)
    size = (max(1, round(panel.width * scale)), max(1, round(panel.height * scale)))
    cell = Image.new("RGB", (VIS_CELL, VIS_CELL), (230, 230, 230))
    cell.paste(panel.convert("RGB").resize(size, Image.BILINEAR),
               ((VIS_CELL - size[0]) // 2, (VIS_CELL - size[1]) // 2))
    return cell


def error_map(prediction: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """prediction - GT (both 0-255): red where the prediction is above the GT, blue below."""
    diff = prediction.astype(np.int16) - gt.astype(np.int16)
    rgb = np.zeros((*gt.shape, 3), np.uint8)
    rgb[..., 0] = np.clip(diff, 0, 255)
    rgb[..., 2] = np.clip(-diff, 0, 255)
    return rgb


def contact_rows(predictor: Predictor, kind: str, pairs, box_above: int = 0) -> list:
    """One row of VIS_COLUMNS cells per image. The SAMA columns stay grey for plain SAM; the error
    map is the scored output's: SAMA's mask (alpha on matting splits), or SAM's mask for plain
    SAM. Point splits show the 10-point prompt, green dots."""
    rows = []
    for files in pairs:
        image, gt = data.load_image(files[0]), data.load_mask(files[1])
        predictor.set_image(image)
        stem = Path(files[1]).stem
        box = (data.mask_to_box(gt > (box_above if kind == "matting" else 128))
               if kind != "points" else None)
        points = sample_points(gt, stem) if kind == "points" else None
        labels = None if points is None else np.ones(len(points), dtype=np.int64)
        out = predictor.predict(points, labels, box)
        shown = Image.fromarray(image)
        draw = ImageDraw.Draw(shown)
        width = max(2, round(max(image.shape) / 100))
        if box is not None:
            draw.rectangle([float(v) for v in box], outline=(255, 0, 0), width=width)
        for x, y in points if points is not None else []:
            r = 2 * width
            draw.ellipse([x - r, y - r, x + r, y + r], fill=(0, 255, 0), outline=(0, 0, 0))
        grey = np.full(gt.shape, 128, np.uint8)
        sama = predictor.is_sama
        sam_mask = to_uint8(out["sam"])
        sama_mask = to_uint8(out["mask"]) if sama else grey
        alpha = to_uint8(out["alpha"]) if sama else grey
        scored = (alpha if kind == "matting" else sama_mask) if sama else sam_mask
        panels = [shown, gt, sam_mask, sama_mask, alpha, error_map(scored, gt)]
        rows.append([fit_cell(Image.fromarray(p) if isinstance(p, np.ndarray) else p)
                     for p in panels])
    return rows


def contact_sheet(rows: list, path: Path) -> None:
    """The rows under one header of column titles, every cell the same size; written atomically."""
    gap = 4
    step = VIS_CELL + gap
    sheet = Image.new("RGB", (len(VIS_COLUMNS) * step - gap, VIS_HEADER + len(rows) * step),
                      (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for k, name in enumerate(VIS_COLUMNS):
        draw.text((k * step + 2, 3), name, fill=(0, 0, 0))
    for i, row in enumerate(rows):
        for k, cell in enumerate(row):
            sheet.paste(cell, (k * step, VIS_HEADER + i * step))
    png = io.BytesIO()
    sheet.save(png, format="PNG")
    outputs.write_bytes(png.getvalue(), path)


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------


def results_markdown(split_name: str, report: dict) -> str:
    """Our row beside the paper's rows for this split, each with its table named."""
    kind = SPLITS[split_name].kind
    scores = report["scores"]
    if kind == "seg":
        keys = SEG_KEYS
    elif kind == "points":
        keys = tuple(f"{m}@{k}" for k in POINT_COUNTS for m in ("mIoU", "mBIoU"))
    else:
        keys = MATTING_KEYS + tuple(k + BAND for k in MATTING_KEYS if k + BAND in scores)

    def fmt(v) -> str:
        return "–" if v is None else f"{v:.4g}" if kind == "matting" else f"{v:.3f}"

    ours = report["config"]
    source = report["checkpoint"] or report["sam_checkpoint"]
    lines = [f"# {split_name}: {report['model']} ({source})", "",
             f"Prompt: {report['prompt']}.  ", f"Prediction: {report['prediction']}.  "]
    if kind == "matting":
        lines.append(f"Region: {scores['region']}; SAD, Grad, Conn / 1000, MSE x1e3.  ")
        if "region" + BAND in scores:
            lines.append(f"Columns {BAND}: the {scores['region' + BAND]} of the derived trimap.  ")
    lines += [
        f"Images: {scores['n']}.",
        "",
        "| row | source | " + " | ".join(map(column, keys)) + " |",
        "|---|---|" + "---|" * len(keys),
        "| **ours** | this run | " + " | ".join(fmt(scores[k]) for k in keys) + " |",
    ]
    for row in PAPER.get(split_name, []):
        match = all(ours.get(k) == v for k, v in row["config"].items())
        label = f"paper: {row['label']}" + (" (same configuration as ours)" if match else "")
        lines.append(
            f"| {label} | {row['table']} | "
            + " | ".join(fmt(row["scores"].get(k)) for k in keys)
            + " |"
        )
    if split_name in PAPER_NOTES:
        lines += ["", PAPER_NOTES[split_name]]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------


def folder_split(folder) -> str:
    """--folder's split from what it holds: masks (gt/) or mattes (alpha/); both: say which."""
    sets = data.folder_sets(folder)
    if sets["masks"] and sets["mattes"]:
        raise data.DataError(f"{folder}: holds masks (gt) and mattes (alpha); choose one with "
                             f"--split folder-masks or --split folder-mattes")
    return "folder-masks" if sets["masks"] else "folder-mattes"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--split", help=", ".join(SPLITS) + " (default with --folder: by its folders)")
    p.add_argument(
        "--model", default="sama", choices=["sama", "sam"], help="sam: the plain-SAM baseline row"
    )
    p.add_argument(
        "--checkpoint",
        help="SAMA checkpoint (default: the training run's sama.pt for the switches below)",
    )
    p.add_argument(
        "--sam-checkpoint",
        help="SAM checkpoint (default: the file recorded in the SAMA checkpoint)",
    )
    p.add_argument("--no-mvle", action="store_true", help="the ablation trained with --no-mvle")
    p.add_argument(
        "--no-local-adapter",
        action="store_true",
        help="the ablation trained with --no-local-adapter",
    )
    p.add_argument("--tasks", choices=list(TASK_CHOICES),
                   help="the run trained with --tasks (default: runs/sama, or what --checkpoint "
                        "records); must agree with the checkpoint")
    p.add_argument("--data", default="./DIS5K", help="DIS5K folder (DIS-VD, DIS-TE1..4)")
    p.add_argument("--coift", default="./COIFT", help="COIFT folder")
    p.add_argument("--thin", default="./ThinObject5K", help="ThinObject-5K folder (either layout)")
    p.add_argument(
        "--matting", default="./AIM", help="folder holding Combined_Dataset (Composition-1K), or it"
    )
    p.add_argument("--aim500", default="./AIM-500", help="AIM-500 folder")
    p.add_argument("--am2k", default="./AM-2K", help="AM-2K folder")
    p.add_argument("--p3m", default="./P3M-10k", help="P3M-10k folder")
    p.add_argument("--d646", default="./Distinctions-646", help="Distinctions-646 folder")
    p.add_argument("--backgrounds", help="Distinctions-646: the folder holding the images its "
                                         "Test/bg_test.txt names (VOC 2012's JPEGImages), to "
                                         "composite its test set over, once")
    p.add_argument("--refmatte", default="./RefMatte_RW_100", help="RefMatte-RW100 folder")
    p.add_argument("--folder", help="a folder of your own: DIR/{im, gt} (split folder-masks) or "
                                    "DIR/{im, alpha} (folder-mattes), every image scored")
    p.add_argument("--out", help="output folder (default: runs/eval/<run>-<split>)")
    p.add_argument(
        "--vis", type=int, default=0, metavar="N", help="write vis.png for the first N images"
    )
    p.add_argument(
        "--limit", type=int, default=0, metavar="N", help="only the first N images (0: all)"
    )
    p.add_argument("--resume", action="store_true", help="reuse the predictions already in --out")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the evaluation in --out (its pred*/, settings.json, metrics.json, "
                        "results.md, vis.png)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile SAM's image encoder before the first image (time printed)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.split is None and args.folder is None:
        print("error: --split is required (or --folder DIR)", file=sys.stderr)
        return 2
    if args.split is not None and args.split not in SPLITS:
        print(f"error: unknown split {args.split!r}; valid: {', '.join(SPLITS)}", file=sys.stderr)
        return 2
    for option, value in (("--limit", args.limit), ("--vis", args.vis)):
        if value < 0:
            print(f"error: {option} {value}: must be 0 or more", file=sys.stderr)
            return 2
    if args.resume and args.overwrite:
        print("error: --resume and --overwrite: give one or the other", file=sys.stderr)
        return 2
    keep_freed_cpu_memory()
    outputs.interrupts_as_keyboard_interrupt()
    try:
        if args.split is None:
            args.split = folder_split(args.folder)  # it names the default output folder
        with outputs.claim(output_folder(args)):  # one run at a time in --out
            check_out(args)  # once held: another run may have written it until now
            return run(args)
    except NonFiniteOutput as e:
        print(f"error: {e}; not written, not scored", file=sys.stderr)
        return 3
    except (data.DataError, CheckpointError, WriteError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(outputs.INTERRUPTED, file=sys.stderr)
        return 130


OWN = ("settings.json", "metrics.json", "results.md", "vis.png")  # pred*/ besides


def output_folder(args) -> Path:
    """--out, or runs/eval/<run>-<split> for the switches given."""
    if args.out:
        return Path(args.out)
    run_dir = outputs.default_run_dir(args.no_mvle, args.no_local_adapter, args.tasks or "both")
    return Path("runs") / "eval" / f"{'sam' if args.model == 'sam' else run_dir.name}-{args.split}"


def check_out(args) -> None:
    """Before any work: no file stands where a folder goes, and a run without --resume or
    --overwrite starts in an empty folder (outputs.claim checked that --out can be written)."""
    out = output_folder(args)
    kind = SPLITS[args.split].kind
    for name in [f"pred-{k}pt" for k in POINT_COUNTS] if kind == "points" else ["pred"]:
        if (out / name).exists() and not (out / name).is_dir():
            raise WriteError(f"{out / name}: is a file, where the predictions go; use another "
                             f"--out")
    there = outputs.files(out)
    if there and not (args.resume or args.overwrite):
        raise WriteError(f"{out}: holds an earlier evaluation ({', '.join(there[:3])}"
                         f"{', ...' * (len(there) > 3)}); --resume continues it (same weights and "
                         f"data only), --overwrite replaces it, or use another --out")


def clear_own_outputs(out: Path) -> None:
    """--overwrite: this command's outputs in --out go, before anything is written; other files
    stay."""
    for path in out.glob("pred*"):
        if path.is_dir():
            shutil.rmtree(path)
    for name in OWN:
        (out / name).unlink(missing_ok=True)


def load_model(args, checkpoint: Path, device: str) -> tuple[Union[SAMA, Sam], dict, str]:
    """The model to evaluate, its configuration (recorded in metrics.json, matched to paper rows)
    and the SAM file it runs on. A SAMA model's configuration holds the tasks and the mask
    threshold its checkpoint records. model.loaded_from holds the SHA-256 of the bytes loaded (for
    plain SAM taken from a SAMA file: the SAMA file's record)."""
    if args.model == "sam" and args.sam_checkpoint:  # plain SAM needs no SAMA file
        sam = load_sam(args.sam_checkpoint, device=device)
        return (
            sam,
            {"model": "sam", "variant": sam.config.name},
            str(Path(args.sam_checkpoint).resolve()),
        )
    sama = load_sama(checkpoint, args.sam_checkpoint, device=device)  # one read of each file
    tasks = sama.loaded_from["tasks"]
    if args.model == "sama" and args.tasks and TASK_CHOICES[args.tasks] != tasks:
        trained = next(name for name, heads in TASK_CHOICES.items() if heads == tasks)
        raise CheckpointError(f"{checkpoint}: trained with --tasks {trained}, not --tasks "
                              f"{args.tasks} (a head is scored only if it trained)")
    sam_file = sama.loaded_from["sam"]["file"]
    if (args.no_mvle and sama.use_mvle) or (args.no_local_adapter and sama.use_local_adapter):
        raise CheckpointError(
            f"{checkpoint}: holds {sama.config}, not the ablation asked for (--no-mvle / "
            "--no-local-adapter)"
        )
    if args.model == "sam":
        sama.sam.loaded_from = sama.loaded_from
        return sama.sam, {"model": "sam", "variant": sama.sam.config.name}, sam_file
    return sama, {"model": "sama", **sama.config, "tasks": tasks,
                  "threshold": sama.loaded_from["threshold"]}, sam_file


def prediction_text(kind: str, config: dict) -> str:
    """What the written PNGs hold, for metrics.json and results.md."""
    if config["model"] == "sam":
        if kind == "matting":
            return "SAM's binary mask as alpha (0 / 255)"
        if kind == "points":
            return "SAM's binary mask (logits > 0, single-mask output), 0 / 255 PNG"
        return ("SAM's probability sigmoid(mask logits) (single-mask output), 0-255 PNG; its "
                "binary mask (logits > 0), 0 / 255 PNG")
    tasks = config["tasks"]
    if kind == "matting":
        if "matting" in tasks:
            return "SAMA alpha (matting head), 0-255 PNG"
        return ("SAMA segmentation probability sigmoid(seg logits) as the alpha (the model trained "
                "no matting head), 0-255 PNG")
    mask = f"binary mask (probability > {config['threshold']:g}), 0 / 255 PNG"
    if kind == "points":
        return f"SAMA {mask}"
    if "seg" in tasks:
        return f"SAMA segmentation probability sigmoid(seg logits), 0-255 PNG; its {mask}"
    return (f"SAMA alpha (matting head) as the segmentation probability map (the model trained no "
            f"segmentation head), 0-255 PNG; its {mask}")


def read_settings(path: Path) -> dict:
    """settings.json of an earlier run, or one line saying it is not one."""
    try:
        settings = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise data.DataError(f"{path}: unreadable ({type(e).__name__}); use another --out or "
                             f"--overwrite") from None
    if not isinstance(settings, dict):
        raise data.DataError(f"{path}: not a settings object; use another --out or --overwrite")
    return settings


def run(args) -> int:
    if args.split is None:
        args.split = folder_split(args.folder)
    split = SPLITS[args.split]
    root = getattr(args, split.root_option)
    if root is None:
        raise data.DataError(f"--split {args.split} needs --{split.root_option} DIR")
    options = {name: getattr(args, name) for name in split.options}
    pairs = all_pairs = split.reader(root, **options)  # data problems show before the model loads
    if args.limit:
        pairs = pairs[: args.limit]
    # every file decoded, sizes equal, an object in every GT (the prompt comes from it): one line
    # naming the file, before any prediction
    # (a scored trimap: only 0 / 128 / 255, with an unknown region)
    data.check_pairs(pairs, matting=split.kind == "matting", above=split.box_above if
                     split.kind == "matting" else None,
                     trimaps=split.trimap_region or split.band_column)
    run_dir = outputs.default_run_dir(args.no_mvle, args.no_local_adapter, args.tasks or "both")
    checkpoint = Path(args.checkpoint) if args.checkpoint else run_dir / "sama.pt"
    out = output_folder(args)
    if (
        not args.checkpoint
        and not checkpoint.exists()
        and not (args.model == "sam" and args.sam_checkpoint)
    ):
        raise CheckpointError(
            f"{checkpoint}: no such file (the default training run's weights for these switches); "
            f"train first or pass --checkpoint"
        )
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, config, sam_file = load_model(args, checkpoint, device)

    # what made the predictions in `out`: --resume refuses to mix two models' or two datasets'
    # files. The weights are known by the SHA-256 of the bytes loaded (a file retrained at the same
    # path is another model), the data by the names and bytes of every file of the split
    sam_only = args.model == "sam" and args.sam_checkpoint
    loaded = model.loaded_from
    settings = {
        "split": args.split,
        "model": args.model,
        "checkpoint": None if sam_only else str(checkpoint.resolve()),
        "checkpoint_sha256": None if sam_only else loaded["sha256"],
        "sam_checkpoint": sam_file,
        "sam_sha256": loaded["sha256"] if sam_only else loaded["sam"]["sha256"],
        "config": config,
        "prompt": PROMPTS[split.kind].format(above=split.box_above),
        "prediction": prediction_text(split.kind, config),  # what the PNGs hold
        "data": outputs.files_digest(f for files in all_pairs for f in files),
    }
    settings_path = out / "settings.json"
    if args.resume and settings_path.is_file():
        before = read_settings(settings_path)
        where = ("checkpoint", "sam_checkpoint")  # paths: the same weights may have moved
        changed = [k for k in settings if k not in where and before.get(k) != settings[k]]
        if changed:
            raise data.DataError(f"{out}: holds predictions made with another "
                                 f"{', '.join(changed)}; use another --out or --overwrite")
    elif args.resume and outputs.files(out):
        raise data.DataError(f"{out}: holds files but no settings.json saying which weights and "
                             f"data made them; use another --out or --overwrite")
    if args.overwrite:
        clear_own_outputs(out)
    for folder in (out, *out.glob("pred*")):  # what writes killed mid-way left
        outputs.remove_stale_temporaries(folder)
    out.mkdir(parents=True, exist_ok=True)
    write_text(json.dumps(settings, indent=2) + "\n", settings_path)

    if args.compile:
        sam = model if isinstance(model, Sam) else model.sam
        views = 5 if isinstance(model, SAMA) and model.use_mvle else 1
        seconds = compile_image_encoder(sam.eval(), views)
        print(f"--compile: SAM's image encoder compiled in {seconds:.1f} s")
    predictor = Predictor(model, config.get("tasks"), config.get("threshold", DEFAULT_THRESHOLD))
    scores, per_image = evaluate(args.split, pairs, out, predictor, args.resume,
                                 progress=not args.no_progress)
    if args.vis:
        contact_sheet(contact_rows(predictor, split.kind, pairs[: args.vis], split.box_above),
                      out / "vis.png")

    report = {
        **settings,
        "data": str(Path(root).resolve()),
        "scored": "every PNG in pred*/ (and mask/) read back and scored with metrics.py at the "
                  "GT's resolution",
        "scores": scores,
        "paper": PAPER.get(args.split, []),
    }
    # per_image.json first: a metrics.json always has its images' scores beside it
    write_text(json.dumps({"split": args.split, "stems": [Path(p[1]).stem for p in pairs],
                           "scores": per_image}) + "\n", out / "per_image.json")
    write_text(json.dumps(report, indent=2) + "\n", out / "metrics.json")
    write_text(results_markdown(args.split, report), out / "results.md")
    shown = ", ".join(f"{column(k)} {v:.4g}" for k, v in scores.items() if isinstance(v, float))
    print(f"{args.split} ({scores['n']} images), {args.model}: {shown}  -> {out / 'metrics.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
