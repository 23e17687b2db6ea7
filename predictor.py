"""The predictor contract, for predict.py, app.py, the demo, evaluation and training's validation:
one predictor for SAMA and plain SAM; every object of an image (SAM's automatic mask generation,
each object refined by SAMA: every_object). Also the one process-wide setting the command lines make
for the CPU (keep_freed_cpu_memory). What a prediction becomes (the mask, the alpha and the RGBA
cutout) is frame.output_images, written as PNGs, all or none, by outputs.save_pngs.

The contract (DESIGN.md, "One predictor contract"), which sama_onnx.OnnxPredictor keeps too:
`set_image(image)`, an (H, W, 3) uint8 RGB array, then `predict(points=None, labels=None,
box=None)` in the image's pixels -> a dict of numpy maps at the image's size: "seg" float32 in
[0, 1] (the probability map), "mask" bool, "alpha" float32 in [0, 1], "sam" bool (plain SAM's
mask); (H, W) for one object, (B, H, W) for B boxes (B, 4) or point sets (B, N, 2) in one call
(DESIGN.md, "Many prompts in one call"). Its inputs are checked in frame.py (check_image,
check_prompt_batch: one line, a ValueError, naming the bad object), its outputs refused when they
hold NaN or inf (frame.NonFiniteOutput).
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch

# the contract's checks and the frame's coordinates, in frame.py: torch-free, for the ONNX
# predictor too
from frame import (
    BATCH_BYTES,
    check_finite,
    check_image,
    check_prompt_batch,
    predict_in_passes,
    scale_coords,
)
from frame import batch_size_for as frame_batch_size
from load_sam_weights import DEFAULT_THRESHOLD, load_sama
from sam import Sam, SamPredictor, postprocess_masks, prompt_tensors
from sama import SAMA, TASKS, SamaPredictor

# ----------------------------------------------------------------------------------------------
# One predictor for SAMA and plain SAM
# ----------------------------------------------------------------------------------------------


class Predictor:
    """SAMA (SamaPredictor) or plain SAM (SamPredictor, single-mask output) behind one call.

    predict() returns maps at the image's size, the same kinds for both models (like for like):
    "seg" float32 in [0, 1], the probability map (SAMA: sigmoid(seg logits); SAM: sigmoid of its
    mask logits, up-sampled as SamPredictor up-samples them); "mask" bool, the binary mask (SAMA:
    seg > `threshold`, the one its checkpoint records, read_sama_checkpoint; SAM: logits > 0, as
    SamPredictor thresholds); "alpha" float32 in [0, 1] (SAM: its binary mask); "sam" bool (SAM's
    mask). It raises NonFiniteOutput if the logits or the alpha hold NaN or inf. The maps are
    computed in torch and come to numpy once, at the end.

    A SAMA model is always read through the heads it trained (`tasks`, as its checkpoint records
    them): trained for matting only, its alpha is also the segmentation probability map; trained for
    segmentation only, its probability sigmoid(seg logits) is also the alpha. The untrained head's
    output is never returned. A model from load_sama records both (model.checkpoint_record), and
    they are read from there unless given; a SAMA made in memory needs its tasks given, so that no
    head is ever scored by default. Predictor.from_checkpoint is the one call from a file.
    """

    def __init__(self, model: Union[SAMA, Sam], tasks: Optional[Sequence[str]] = None,
                 threshold: Optional[float] = None) -> None:
        self.is_sama = isinstance(model, SAMA)
        record = model.checkpoint_record
        if self.is_sama and tasks is None and record is not None:
            tasks = record.tasks
        if threshold is None:
            threshold = record.threshold if self.is_sama and record else DEFAULT_THRESHOLD
        self.model = model
        self.threshold = threshold
        # SAMA: only the trained heads' passes run; SamaPredictor refuses tasks it has no head for
        self.predictor = (SamaPredictor(model, tasks) if self.is_sama
                          else SamPredictor(model.eval()))
        self.tasks = self.predictor.tasks if self.is_sama else ()
        self.sam = model.sam if self.is_sama else model
        self.size: tuple[Optional[int], Optional[int]] = (None, None)  # (H, W) once set_image ran
        self.batch_size = batch_size_for(model)  # prompts in one pass of the decoders

    @classmethod
    def from_checkpoint(cls, checkpoint, sam_checkpoint=None, device="cpu") -> Predictor:
        """A ready predictor from a SAMA checkpoint (load_sama: checked strictly, one line,
        CheckpointError): its trained heads, the mask at the threshold it records."""
        return cls(load_sama(checkpoint, sam_checkpoint, device=device))

    def set_image(self, image: np.ndarray) -> None:
        """image: (H, W, 3) uint8 RGB; anything else -> ValueError, one line."""
        check_image(image)
        self.predictor.set_image(image)
        self.size = image.shape[:2]

    @torch.no_grad()
    def predict(self, points=None, labels=None, box=None,
                batch_size: Optional[int] = None) -> dict[str, np.ndarray]:
        """One object: points (N, 2) xy with labels (N,) of 1 (foreground) or 0 (background)
        and / or a box (4,) xyxy -> maps (H, W), as before batching came. Many objects in one
        call: boxes (B, 4) and / or points (B, N, 2) with labels (B, N), the i-th box with the
        i-th point set -> maps (B, H, W) in the order given (B = 1 too: a batch of one; B = 0:
        empty maps, nothing run). Pixels of the image, the points inside it (0 <= x <= W,
        0 <= y <= H), the box's corners in order and some of it inside (a box partly outside is
        clipped to the image, with a warning), as the command line checks them; anything else ->
        PromptError (a ValueError), one line, naming the object ("object 2 of 5: box ...").

        The image's features are those set_image computed; the decoders run once per task over
        the batch, in passes of at most `batch_size` prompts (default: self.batch_size, from the
        estimated memory, batch_size_for). Each object's maps equal those of its own call: the
        probabilities and alphas within float rounding, the masks identical (tests/test_batch.py).
        """
        objects, batched = check_prompt_batch(points, labels, box, *self.size)
        return predict_in_passes(objects, batched, batch_size or self.batch_size,
                                 self.predict_objects, self.size)

    def predict_objects(self, objects: list[tuple]) -> dict[str, np.ndarray]:
        """Checked objects [(points, labels, box)] -> maps (B, H, W): the prompts stacked in frame
        pixels, the decoders once over them."""
        # each object's prompt in frame pixels, as its own call makes it, then stacked
        rows = [prompt_tensors(*obj, self.size, self.sam.config.image_size, self.sam.device)
                for obj in objects]
        prompts = [None if row[0] is None else torch.cat(row) for row in zip(*rows)]
        if self.is_sama:
            # seg_logits and alpha of the trained heads, sam_logits
            maps = self.predictor.predict_torch(*prompts)
            if "seg_logits" in maps:  # the probability map the field scores
                maps["seg"] = torch.sigmoid(maps["seg_logits"])
        else:
            masks, _, _ = self.predictor.predict_torch(*prompts, multimask_output=False,
                                                       return_logits=True)
            maps = {"sam_logits": masks[:, 0], "seg": torch.sigmoid(masks[:, 0])}
        maps = {name: m.cpu().numpy() for name, m in maps.items()}  # to numpy, once
        named = {"seg_logits": "segmentation logits", "alpha": "alpha", "sam_logits": "SAM logits"}
        check_finite({named[name]: maps[name] for name in named if name in maps})
        sam = maps["sam_logits"] > self.sam.mask_threshold  # as SamPredictor thresholds
        if not self.is_sama:
            return {"seg": maps["seg"], "mask": sam, "alpha": sam.astype(np.float32), "sam": sam}
        seg, alpha = maps.get("seg"), maps.get("alpha")
        if "seg" not in self.tasks:  # matting only: the alpha as the segmentation probability map
            seg = alpha
        if "matting" not in self.tasks:  # segmentation only: the probability as the alpha
            alpha = seg
        return {"seg": seg, "mask": seg > self.threshold, "alpha": alpha, "sam": sam}


def batch_size_for(model: Union[SAMA, Sam], budget: int = BATCH_BYTES) -> int:
    """The most prompts one pass of the model's decoders takes (frame.batch_size_for): SAMA's
    two tasks' passes (one at a time) beside SAM's pass, or SAM's pass alone."""
    sam = model.sam if isinstance(model, SAMA) else model
    cfg = sam.config
    # both heads' passes counted, as a model of both tasks runs them (a one-task model, which
    # runs one, gets the same, smaller-than-needed batch)
    tasks = len(TASKS) if isinstance(model, SAMA) else 0
    return frame_batch_size(cfg.grid_size, cfg.prompt_embed_dim, cfg.image_size, tasks, budget)


# ----------------------------------------------------------------------------------------------
# Every object of an image: SAM's automatic mask generation finds the objects, SAMA refines each
# one from its box into a mask and an alpha matte.
#
# SAM's automatic mask generation (Kirillov et al. 2023, Sec. 4 "Fully automatic stage" and
# Appendix B; the definitions and defaults of Meta's `SamAutomaticMaskGenerator`, which
# tests/test_automatic.py runs beside this on the same weights) prompts SAM with a regular grid of
# single foreground points, three masks each (multimask output), and keeps a mask when
#     1. SAM's own predicted IoU exceeds pred_iou_thresh,
#     2. it is stable: thresholding its logits at mask_threshold - offset and + offset gives nearly
#        the same mask (the stability score, their IoU, at least stability_score_thresh),
#     3. no kept mask of a higher predicted IoU has a box overlapping its box by more than
#        box_nms_thresh (box non-maximum suppression).
# The kept masks come out in decreasing predicted IoU. Meta's crop layers (crop_n_layers > 0: the
# grid run again on zoomed crops) and its small-region clean-up (min_mask_region_area > 0, OpenCV)
# are not implemented: with their defaults (0 and 0) neither runs, and Meta's crop-edge filter is
# then a no-op (DESIGN.md).
#
#     found = find_objects(predictor)            # after predictor.set_image(image)
#     maps = refine(predictor, [f.box for f in found])   # SAMA's maps per object
#
# Meta's thresholds (0.88 / 0.95) suit the real SAM; a SAM checkpoint may carry its own beside it
# (X.everything.json for X.pth, its SHA-256 inside): the shipped stand-in does, chosen on validation
# scenes by `python -m miniature.everything_study` (settings_for).
# ----------------------------------------------------------------------------------------------

# Settings: Meta's defaults, or the ones recorded beside a SAM checkpoint

MAX_LOGITS = 2**26  # full-size logits held at once (256 MB in float32): the point batch's limit


@dataclass(frozen=True)
class Settings:
    """SamAutomaticMaskGenerator's settings and defaults (crop_n_layers and
    min_mask_region_area: 0, the only values supported)."""

    points_per_side: int = 32
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    stability_score_offset: float = 1.0
    box_nms_thresh: float = 0.7


class SettingsError(ValueError):
    """A thresholds file beside a SAM checkpoint that cannot be read (one line)."""


EVERYTHING_THRESHOLDS = ("pred_iou_thresh", "stability_score_thresh")


def thresholds_file(sam_file: os.PathLike) -> Path:
    """Where a SAM checkpoint's own thresholds are recorded: X.everything.json beside X.pth."""
    return Path(sam_file).with_suffix(".everything.json")


def settings_for(sam: Sam) -> Settings:
    """Meta's defaults, with the thresholds recorded beside the SAM file the model was loaded from
    (load_sam_weights' checkpoint_record) when there is such a file and it names these weights by
    their SHA-256 (the shipped stand-in's: weights/sam_standin.everything.json)."""
    record = sam.checkpoint_record
    if record is None or not thresholds_file(record.file).is_file():
        return Settings()
    path = thresholds_file(record.file)
    try:
        recorded = json.loads(path.read_text())
        if recorded["sam_sha256"] != record.sha256:
            return Settings()  # written for other weights
        values = {k: float(recorded[k]) for k in EVERYTHING_THRESHOLDS}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SettingsError(f"{path}: not a thresholds record ({type(e).__name__}: {e})"
                            ) from None
    if not all(0 <= v <= 1 for v in values.values()):
        raise SettingsError(f"{path}: thresholds {values} not in [0, 1]")
    return replace(Settings(), **values)


# ----------------------------------------------------------------------------------------------
# The pieces: point grid, stability score, mask boxes, box IoU and non-maximum suppression
# ----------------------------------------------------------------------------------------------


def point_grid(n: int) -> np.ndarray:
    """(n * n, 2) xy in [0, 1]: cell centres of an n x n grid, x varying fastest."""
    centres = (np.arange(n) + 0.5) / n  # 1 / 2n, 3 / 2n, ..., 1 - 1 / 2n
    ys, xs = np.meshgrid(centres, centres, indexing="ij")
    return np.stack([xs, ys], axis=-1).reshape(-1, 2)


def stability_score(logits: torch.Tensor, threshold: float, offset: float) -> torch.Tensor:
    """(..., H, W) logits -> (...,): the IoU of the masks at threshold + offset and at
    threshold - offset. The first lies inside the second, so their IoU is the ratio of areas."""
    # stability = |logits > t + d| / |logits > t - d|
    high = (logits > threshold + offset).flatten(-2).sum(-1)
    low = (logits > threshold - offset).flatten(-2).sum(-1)
    return high / low  # 0 / 0 (nothing above t - d): NaN, which no threshold keeps


def mask_boxes(masks: torch.Tensor) -> torch.Tensor:
    """(N, H, W) bool -> (N, 4) xyxy of each mask's first and last row and column (inclusive
    pixel indices, as data.mask_to_box); an empty mask's box is 0 0 0 0."""
    rows, cols = masks.any(dim=2), masks.any(dim=1)  # (N, H), (N, W): rows / columns touched
    h, w = rows.shape[1], cols.shape[1]
    y0, y1 = rows.int().argmax(1), h - 1 - rows.flip(1).int().argmax(1)  # first / last True
    x0, x1 = cols.int().argmax(1), w - 1 - cols.flip(1).int().argmax(1)
    boxes = torch.stack([x0, y0, x1, y1], dim=1).float()  # (N, 4)
    return torch.where(rows.any(1, keepdim=True), boxes, torch.zeros_like(boxes))


def box_iou(box: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """IoU of one xyxy box (4,) with each of boxes (N, 4); area = width * height (x1 - x0) *
    (y1 - y0), as torchvision's box_iou. Boxes of no union: IoU 0."""
    x0 = torch.maximum(box[0], boxes[:, 0])
    y0 = torch.maximum(box[1], boxes[:, 1])
    x1 = torch.minimum(box[2], boxes[:, 2])
    y1 = torch.minimum(box[3], boxes[:, 3])
    inter = (x1 - x0).clamp(min=0) * (y1 - y0).clamp(min=0)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(union))


def nms(boxes: torch.Tensor, scores: torch.Tensor, threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression: visit the boxes in decreasing score; keep one unless a box
    kept before overlaps it by IoU > threshold. Returns the kept indices, highest score first."""
    order = torch.argsort(scores, descending=True, stable=True)
    suppressed = torch.zeros(len(boxes), dtype=torch.bool, device=boxes.device)
    keep = []
    for i in order.tolist():
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= box_iou(boxes[i], boxes) > threshold
    return torch.tensor(keep, dtype=torch.long, device=boxes.device)


# ----------------------------------------------------------------------------------------------
# SAM's masks for a batch of points, the filters, the selection
# ----------------------------------------------------------------------------------------------


@dataclass
class Candidates:
    """Masks of point prompts with their scores, on one device: logits (N, H, W) or masks (N, H,
    W) bool, predicted IoU (N,), stability (N,), points (N, 2) xy in image pixels."""

    masks: torch.Tensor
    predicted_iou: torch.Tensor
    stability: torch.Tensor
    points: torch.Tensor


def point_masks(sam: Sam, embedding: torch.Tensor, input_size: tuple[int, int],
                original_size: tuple[int, int], points: np.ndarray,
                offset: float) -> Candidates:
    """SAM's three masks for each single foreground point (B, 2) xy in image pixels, on the image
    embedding (1, C, G, G): logits at the image's size (3B, H, W), point by point, each point's
    three masks in turn, with their predicted IoU and stability scores (3B,)."""
    S, dev = sam.config.image_size, sam.device
    coords = torch.as_tensor(scale_coords(points, original_size, S), dtype=torch.float32,
                             device=dev)[:, None]  # (B, 1, 2) in frame pixels
    labels = torch.ones(len(points), 1, dtype=torch.int64, device=dev)  # (B, 1) foreground
    low_res, iou = sam.decode(embedding, coords, labels, multimask_output=True)  # (B, 3, 4G, 4G)
    logits = postprocess_masks(low_res.float(), S, input_size, original_size)  # (B, 3, H, W)
    logits = logits.flatten(0, 1)  # (3B, H, W)
    stability = stability_score(logits, sam.mask_threshold, offset)  # (3B,)
    points = torch.as_tensor(points, device=dev).repeat_interleave(3, dim=0)  # (3B, 2)
    return Candidates(logits, iou.float().flatten(), stability, points)


def passes(c: Candidates, settings: Settings) -> torch.Tensor:
    """(N,) bool: the predicted-IoU filter (strictly above) and the stability filter (at least), as
    Meta's generator applies them; a threshold of 0 switches its filter off."""
    keep = torch.ones_like(c.predicted_iou, dtype=torch.bool)
    if settings.pred_iou_thresh > 0:
        keep &= c.predicted_iou > settings.pred_iou_thresh
    if settings.stability_score_thresh > 0:
        keep &= c.stability >= settings.stability_score_thresh
    return keep


def points_per_batch(settings: Settings, original_size: tuple[int, int]) -> int:
    """settings.points_per_batch, fewer for a large image: a batch's 3 x B full-size logits stay
    within MAX_LOGITS. Each point's masks do not depend on its batch."""
    h, w = original_size
    return max(1, min(settings.points_per_batch, MAX_LOGITS // (3 * h * w)))


@torch.no_grad()
def generate(sam: Sam, embedding: torch.Tensor, input_size: tuple[int, int],
             original_size: tuple[int, int], settings: Settings = Settings()) -> dict:
    """SamAutomaticMaskGenerator.generate (crop_n_layers 0, min_mask_region_area 0) on an image
    embedding (1, C, G, G) -> the kept masks, highest predicted IoU first: {"masks" (K, H, W) bool,
    "boxes" (K, 4) xyxy inclusive, "predicted_iou" (K,), "stability" (K,), "points" (K, 2)}."""
    h, w = original_size
    grid = point_grid(settings.points_per_side) * np.array([w, h])  # (n * n, 2) image pixels
    step = points_per_batch(settings, original_size)
    kept = []
    for i in range(0, len(grid), step):
        c = point_masks(sam, embedding, input_size, original_size, grid[i:i + step],
                        settings.stability_score_offset)
        keep = passes(c, settings)
        kept.append(Candidates(c.masks[keep] > sam.mask_threshold, c.predicted_iou[keep],
                               c.stability[keep], c.points[keep]))
    masks = torch.cat([c.masks for c in kept])  # (N, H, W) bool
    boxes = mask_boxes(masks)
    scores = torch.cat([c.predicted_iou for c in kept])
    order = nms(boxes, scores, settings.box_nms_thresh)  # duplicates removed, best first
    return {"masks": masks[order], "boxes": boxes[order], "predicted_iou": scores[order],
            "stability": torch.cat([c.stability for c in kept])[order],
            "points": torch.cat([c.points for c in kept])[order]}


# ----------------------------------------------------------------------------------------------
# Every object of the predictor's image: found by SAM, refined by SAMA
# ----------------------------------------------------------------------------------------------


@dataclass
class Found:
    """One object SAM's automatic generation found: its mask (H, W) bool, its box xyxy (inclusive
    pixel indices), its scores and the grid point that prompted it (x, y)."""

    mask: np.ndarray
    box: np.ndarray
    predicted_iou: float
    stability: float
    point: np.ndarray


def sam_embedding(predictor: Predictor) -> torch.Tensor:
    """SAM's image embedding (1, C, G, G) of the predictor's image: SAMA's global view F_I (plain
    SAM's own encoding of the frame), or plain SAM's features."""
    inner = predictor.predictor
    if inner.features is None:
        raise RuntimeError("call set_image before find_objects")
    return inner.features.F_I if predictor.is_sama else inner.features


def find_objects(predictor: Predictor, settings: Optional[Settings] = None) -> list[Found]:
    """The objects of the predictor's image (after set_image), found by SAM's automatic mask
    generation on the image's SAM embedding (no second encoding), highest predicted IoU first.
    settings: settings_for(the predictor's SAM) unless given."""
    settings = settings or settings_for(predictor.sam)
    inner = predictor.predictor
    out = generate(predictor.sam, sam_embedding(predictor), inner.input_size, inner.original_size,
                   settings)
    out = {k: v.cpu().numpy() for k, v in out.items()}
    return [Found(out["masks"][i], out["boxes"][i], float(out["predicted_iou"][i]),
                  float(out["stability"][i]), out["points"][i]) for i in range(len(out["masks"]))]


def refine(predictor: Predictor, boxes: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
    """The predictor's maps (its contract: "seg", "mask", "alpha", "sam") for each box, in order:
    SAMA's mask and alpha of each found object, all boxes in one call (the decoders once over
    them; each object's maps those of its own call, tests/test_batch.py)."""
    if not boxes:
        return []
    maps = predictor.predict(box=np.stack([np.asarray(b, dtype=np.float64) for b in boxes]))
    return [{name: m[i] for name, m in maps.items()} for i in range(len(boxes))]


def every_object(predictor: Predictor, image: np.ndarray,
                 settings: Optional[Settings] = None) -> tuple[list[Found], list[dict]]:
    """set_image, find_objects, refine: the objects SAM finds and SAMA's maps for each."""
    predictor.set_image(image)
    found = find_objects(predictor, settings)
    return found, refine(predictor, [f.box for f in found])


def box_text(box: np.ndarray) -> list[float]:
    """A box as JSON numbers (whole pixels are written whole)."""
    return [int(v) if float(v).is_integer() else float(v) for v in box]


# ----------------------------------------------------------------------------------------------
# Host memory on the CPU: the command-line tools call this once (importing a module never does)
# ----------------------------------------------------------------------------------------------


def keep_freed_cpu_memory() -> None:
    """On glibc, let freed tensor memory stay in the process for the next tensor, instead of
    returning every block over 32 MB to the kernel, which must then zero fresh pages for the next
    one.

    On the CPU the five-view encoder batch allocates many such blocks, and faulting in their fresh
    pages costs time (BENCHMARKS.md: `python -m benchmarks.benchmark --optimisations` times SAMA
    with and without this call, in fresh processes). Without the call is the textbook form: the
    process as it starts. The process keeps its peak memory. Elsewhere (macOS, Windows, musl) this
    does nothing.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # mallopt's parameter numbers (malloc.h)
    libc.mallopt(M_MMAP_MAX, 0)  # serve every block from the heap, where free() keeps it
    libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1)  # and never give the heap's free top back
