"""From a prompt to its answers, for predict.py and app.py (evaluate.py and train.py use parts):
one predictor for SAMA and plain SAM, the prompt's checks, and the three images predict.py writes
(the mask, the alpha and the RGBA cutout) as PNGs, written all or none.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image

from frame import NonFiniteOutput, check_finite  # shared with the ONNX predictor
from load_sam_weights import DEFAULT_THRESHOLD
from outputs import WriteError
from sam import Sam, SamPredictor
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
    mask). It raises NonFiniteOutput if the logits or the alpha hold NaN or inf.

    A SAMA model is always read through the heads it trained (`tasks`, as its checkpoint records
    them): trained for matting only, its alpha is also the segmentation probability map; trained for
    segmentation only, its probability sigmoid(seg logits) is also the alpha. The untrained head's
    output is never returned.
    """

    def __init__(self, model: Union[SAMA, Sam], tasks: Optional[Sequence[str]] = None,
                 threshold: float = DEFAULT_THRESHOLD) -> None:
        self.is_sama = isinstance(model, SAMA)
        if self.is_sama and (not tasks or not set(tasks) <= set(TASKS)):
            raise ValueError(f"Predictor(SAMA) needs the tasks its heads were trained for, a "
                             f"non-empty subset of {TASKS}; got {tasks!r}")
        self.threshold = threshold
        self.tasks = tuple(t for t in TASKS if t in tasks) if self.is_sama else ()
        self.predictor = SamaPredictor(model) if self.is_sama else SamPredictor(model.eval())

    def set_image(self, image: np.ndarray) -> None:
        """image: (H, W, 3) uint8 RGB; anything else -> ValueError, one line."""
        if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3
                and image.dtype == np.uint8 and min(image.shape[:2]) > 0):
            shape = getattr(image, "shape", None)
            raise ValueError(f"image: an (H, W, 3) uint8 RGB array is needed, got "
                             f"{type(image).__name__} {getattr(image, 'dtype', '')} {shape}")
        self.predictor.set_image(image)
        self.size = image.shape[:2]

    @torch.no_grad()
    def predict(self, points=None, labels=None, box=None) -> dict[str, np.ndarray]:
        """points (N, 2) xy with labels (N,) of 1 (foreground) or 0 (background), box xyxy: pixels
        of the image, inside it (0 <= x <= W, 0 <= y <= H), the box's corners in order, as the
        command line checks them; anything else -> PromptError (a ValueError), one line."""
        check_prompt_arrays(points, labels, box, *getattr(self, "size", (None, None)))
        if not self.is_sama:
            logits, _, _ = self.predictor.predict(points, labels, box, multimask_output=False,
                                                  return_logits=True)
            check_finite({"SAM logits": logits[0]})
            mask = logits[0] > self.predictor.model.mask_threshold  # as SamPredictor thresholds
            seg = torch.sigmoid(torch.from_numpy(logits[0])).numpy()
            return {"seg": seg, "mask": mask, "alpha": mask.astype(np.float32), "sam": mask}
        seg_logits, alpha, sam_logits = self.predictor.predict(
            points, labels, box, return_logits=True
        )
        check_finite({"segmentation logits": seg_logits, "alpha": alpha, "SAM logits": sam_logits})
        # the probability map the field scores
        seg = torch.sigmoid(torch.from_numpy(seg_logits)).numpy()
        if "seg" not in self.tasks:  # matting only: the alpha as the segmentation probability map
            seg = alpha
        if "matting" not in self.tasks:  # segmentation only: the probability as the alpha
            alpha = seg
        return {"seg": seg, "mask": seg > self.threshold, "alpha": alpha, "sam": sam_logits > 0}


# ----------------------------------------------------------------------------------------------
# The prompt, checked against the image
# ----------------------------------------------------------------------------------------------


class PromptError(ValueError):
    """A prompt that does not fit the image; one line."""


def number(v: float) -> str:
    """A coordinate as given: 228.0001 stays 228.0001 (not 228), 228.0 is 228."""
    return np.format_float_positional(float(v), trim="-")


def check_prompt(box, points: np.ndarray, h: int, w: int, empty_box: bool = False) -> None:
    """Every coordinate finite and inside the image (0 <= x <= W, 0 <= y <= H), box corners
    ordered (x1 > x0, y1 > y0; x1 = x0 too with empty_box: a GT box of one pixel column)."""
    if box is None and len(points) == 0:
        raise PromptError("give a box and / or at least one point")
    shown = "" if box is None else " ".join(number(v) for v in box)
    if box is not None and not np.isfinite(box).all():  # NaN fails every comparison below
        raise PromptError(f"box {shown}: coordinates must be finite numbers")
    for x, y in points:
        if not np.isfinite([x, y]).all():
            raise PromptError(f"point ({number(x)}, {number(y)}): coordinates must be finite "
                              f"numbers")
    if box is not None:
        x0, y0, x1, y1 = box
        if (x1 < x0 or y1 < y0) if empty_box else (x1 <= x0 or y1 <= y0):
            needs = "x1 >= x0 and y1 >= y0" if empty_box else "x1 > x0 and y1 > y0"
            raise PromptError(f"box {shown}: needs {needs}")
        if min(x0, y0) < 0 or x1 > w or y1 > h:
            raise PromptError(f"box {shown}: outside the {w}x{h} image")
    for x, y in points:
        if not (0 <= x <= w and 0 <= y <= h):
            raise PromptError(f"point ({number(x)}, {number(y)}) outside the {w}x{h} image")


def check_prompt_arrays(points, labels, box, h: Optional[int], w: Optional[int]) -> None:
    """The Predictor's arguments: shapes, labels 0 / 1 only, then check_prompt (a box of the GT
    may be one pixel wide: x1 = x0)."""
    if h is None:
        raise PromptError("call set_image before predict")
    pts = np.zeros((0, 2)) if points is None else np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise PromptError(f"points: an (N, 2) array of x y is needed, got shape {pts.shape}")
    if points is not None:
        if labels is None:
            raise PromptError("labels: one per point is needed (1 foreground, 0 background)")
        lab = np.asarray(labels).reshape(-1)
        if len(lab) != len(pts):
            raise PromptError(f"labels: {len(lab)} for {len(pts)} points")
        bad = [v for v in lab.tolist() if v not in (0, 1)]
        if bad:
            raise PromptError(f"labels: {bad[0]!r}: only 1 (foreground) and 0 (background)")
    if box is not None:
        box = np.asarray(box, dtype=np.float64).reshape(-1)
        if box.shape != (4,):
            raise PromptError(f"box: 4 numbers x0 y0 x1 y1 are needed, got {box.size}")
    check_prompt(box, pts, h, w, empty_box=True)



# ----------------------------------------------------------------------------------------------
# The outputs: mask, alpha and cutout
# ----------------------------------------------------------------------------------------------


def output_images(image: np.ndarray, maps: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The image (H, W, 3) uint8 and Predictor.predict's maps -> predict.py's three images, uint8:
    "mask" (H, W) 0 / 255 (the predictor's mask), "alpha" (H, W) 0-255 and
    "cutout" (H, W, 4) RGBA (the image with the alpha as its transparency)."""
    alpha = np.round(maps["alpha"] * 255).astype(np.uint8)
    return {
        "mask": maps["mask"].astype(np.uint8) * 255,
        "alpha": alpha,
        "cutout": np.concatenate([image, alpha[:, :, None]], axis=2),  # (H, W, 4)
    }


def png_bytes(array: np.ndarray) -> bytes:
    """(H, W) grey or (H, W, 4) RGBA uint8 -> the bytes of the PNG save_pngs writes for it."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def save_pngs(images: dict[Path, np.ndarray]) -> None:
    """(H, W) grey or (H, W, 4) RGBA uint8 arrays -> PNGs, all or none: each is written to a
    temporary file beside its target, and only when all are written are they renamed into place.
    On any error (a full disk, a folder in the way) the temporary files, the outputs already renamed
    and the folders made for them are removed, then WriteError names the file. A run killed
    mid-write leaves no truncated PNG (for --resume to trust, or for a user to find)."""
    made = []  # folders this call creates, parents first
    for folder in dict.fromkeys(path.parent for path in images):
        missing = [f for f in (folder, *folder.parents) if not f.exists()]
        made += [f for f in reversed(missing) if f not in made]
    temporary, renamed, path = {}, [], None
    try:
        for folder in made:
            folder.mkdir()
        for path, array in images.items():
            temporary[path] = path.with_name(f"{path.name}.tmp-{os.getpid()}")
            Image.fromarray(array).save(temporary[path], format="PNG")
        for path, tmp in temporary.items():
            os.replace(tmp, path)
            renamed.append(path)
    except OSError as e:
        for leftover in [*temporary.values(), *renamed]:
            leftover.unlink(missing_ok=True)
        for folder in reversed(made):
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        reason = e.strerror or str(e) or type(e).__name__
        raise WriteError(f"{path or e.filename}: cannot write ({reason}); none of "
                         f"{', '.join(p.name for p in images)} written") from None


def save_png(array: np.ndarray, path: Path) -> None:
    """One PNG, atomically (save_pngs)."""
    save_pngs({path: array})
