"""Segment and matte one image with SAMA from a box and / or points.

    python predict.py photo.jpg --box 40 30 420 380 --checkpoint runs/sama/sama.pt
    python predict.py photo.jpg --point 200 150 --point 260 170 --neg-point 30 30 --out cut/photo

writes PREFIX_mask.png (0 / 255), PREFIX_alpha.png (0-255) and PREFIX_cutout.png (RGBA: the image
with the alpha as its transparency), all in the image's own size and orientation (EXIF applied),
all three or none. PREFIX defaults to the image path without its extension. Coordinates are pixels
of the image as displayed (after EXIF rotation), x to the right, y down. The mask is the
segmentation probability above the threshold the checkpoint records (0.5 if none); a model trained
for one task gives both maps from its trained head (see Predictor). Exit status 2: a bad prompt,
image, checkpoint or output path, or a failed write (one line, nothing written); 3: the model's
output holds NaN or inf (nothing written).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import sys
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image

import data
from load_sam_weights import DEFAULT_THRESHOLD, CheckpointError, load_sama, read_sama_header
from sam import Sam, SamPredictor
from sama import SAMA, TASKS, SamaPredictor


# ----------------------------------------------------------------------------------------------
# One predictor for SAMA and plain SAM (evaluate.py uses it too)
# ----------------------------------------------------------------------------------------------


class NonFiniteOutput(ValueError):
    """The model's output holds NaN or inf (broken weights or an overflow); one line."""


def check_finite(maps: dict[str, np.ndarray]) -> None:
    """A NaN map thresholds to an empty mask and rounds to a black alpha: refuse it instead."""
    bad = [name for name, m in maps.items() if not np.isfinite(m).all()]
    if bad:
        raise NonFiniteOutput(f"NaN or inf in the model's {' and '.join(bad)}")


class Predictor:
    """SAMA (SamaPredictor) or plain SAM (SamPredictor, single-mask output) behind one call.

    predict() returns maps at the image's size, the same kinds for both models (like for like):
    "seg" float32 in [0, 1], the probability map (SAMA: sigmoid(seg logits); SAM: sigmoid of its
    mask logits, up-sampled as SamPredictor up-samples them); "mask" bool, the binary mask (SAMA:
    seg > `threshold`, the one its checkpoint records, read_sama_header; SAM: logits > 0, as
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
        self.predictor.set_image(image)

    @torch.no_grad()
    def predict(self, points=None, labels=None, box=None) -> dict[str, np.ndarray]:
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
# Host memory on the CPU: the command-line tools call this once (importing a module never does)
# ----------------------------------------------------------------------------------------------


def keep_freed_cpu_memory() -> None:
    """On glibc, let freed tensor memory stay in the process for the next tensor, instead of
    returning every block over 32 MB to the kernel, which must then zero fresh pages for the next
    one.

    On the CPU the five-view encoder batch allocates many such blocks, and faulting in their fresh
    pages costs time: SAMA per image (ViT-B, 2 cores) 40.6 s with this call against 71.0 s without
    at 1024 px (0.57x), 8.69 s against 10.99 s at 512 px (0.79x) (`python benchmark.py
    --optimisations --variants vit_b --image-size 1024`, fresh processes, alternating). Without the
    call is the textbook form: the process as it starts. The process keeps its peak memory.
    Elsewhere (macOS, Windows, musl) this does nothing.
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


class WriteError(OSError):
    """An output that could not be written (nothing of the set is left); one line."""


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


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------


class PromptError(ValueError):
    """A prompt that does not fit the image; one line."""


def pairs(values: list[float], option: str) -> np.ndarray:
    """[x0, y0, x1, y1, ...] -> (N, 2); an odd count is an error."""
    if len(values) % 2:
        raise PromptError(f"{option} takes x y pairs, got {len(values)} values")
    return np.asarray(values, dtype=np.float64).reshape(-1, 2)


def check_prompt(box, points: np.ndarray, h: int, w: int) -> None:
    """Every coordinate finite and inside the image (0 <= x <= W, 0 <= y <= H), box corners
    ordered."""
    if box is None and len(points) == 0:
        raise PromptError("give a --box and / or at least one --point")
    if box is not None and not np.isfinite(box).all():  # NaN fails every comparison below
        shown = " ".join(f"{v:g}" for v in box)
        raise PromptError(f"--box {shown}: coordinates must be finite numbers")
    for x, y in points:
        if not np.isfinite([x, y]).all():
            raise PromptError(f"point ({x:g}, {y:g}): coordinates must be finite numbers")
    if box is not None:
        x0, y0, x1, y1 = box
        if x1 <= x0 or y1 <= y0:
            raise PromptError(f"--box {x0:g} {y0:g} {x1:g} {y1:g}: needs x1 > x0 and y1 > y0")
        if min(x0, y0) < 0 or x1 > w or y1 > h:
            raise PromptError(f"--box {x0:g} {y0:g} {x1:g} {y1:g}: outside the {w}x{h} image")
    for x, y in points:
        if not (0 <= x <= w and 0 <= y <= h):
            raise PromptError(f"point ({x:g}, {y:g}) outside the {w}x{h} image")


def check_outputs(paths: list[Path]) -> None:
    """Refuse, before any work, outputs that cannot be written: a target that is a folder, a folder
    under a file, a folder without write permission."""
    for path in paths:
        if path.is_dir():
            raise WriteError(f"{path}: is a folder, not a file (choose another --out)")
    folder = next(f for f in (paths[0].parent, *paths[0].parent.parents) if f.exists())
    if not folder.is_dir():
        raise WriteError(f"{folder}: is a file, so {paths[0].parent} cannot be a folder "
                         f"(choose another --out)")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise WriteError(f"{folder}: no permission to write there (choose another --out)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("image")
    p.add_argument("--box", type=float, nargs=4, metavar=("X0", "Y0", "X1", "Y1"))
    p.add_argument("--point", type=float, nargs="+", action="extend", default=[], metavar="X Y",
                   help="positive point(s): x y [x y ...]; may repeat")
    p.add_argument("--neg-point", type=float, nargs="+", action="extend", default=[], metavar="X Y",
                   help="negative point(s): x y [x y ...]; may repeat")
    p.add_argument("--checkpoint", default="runs/sama/sama.pt", help="SAMA checkpoint")
    p.add_argument(
        "--sam-checkpoint",
        help="SAM checkpoint (default: the file recorded in the SAMA checkpoint)",
    )
    p.add_argument("--out", help="output prefix (default: the image path without its extension)")
    args = p.parse_args(argv)
    keep_freed_cpu_memory()
    prefix = Path(args.out) if args.out else Path(args.image).with_suffix("")
    targets = {name: Path(f"{prefix}_{name}.png") for name in ("mask", "alpha", "cutout")}
    try:
        # EXIF orientation applied: outputs match what viewers show
        image = data.load_image(args.image)
        h, w = image.shape[:2]
        pos, neg = pairs(args.point, "--point"), pairs(args.neg_point, "--neg-point")
        points = np.concatenate([pos, neg])
        check_prompt(args.box, points, h, w)
        check_outputs(list(targets.values()))
        model = load_sama(
            args.checkpoint,
            args.sam_checkpoint,
            device="cuda" if torch.cuda.is_available() else "cpu",
        )
        header = read_sama_header(args.checkpoint)
    except (PromptError, data.DataError, CheckpointError, WriteError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    # a single-task model: both maps from its trained head; the mask at its recorded threshold
    predictor = Predictor(model, header["tasks"], header["threshold"])
    predictor.set_image(image)
    labels = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))]).astype(np.int64)
    try:
        out = predictor.predict(points if len(points) else None, labels if len(points) else None,
                                None if args.box is None else np.asarray(args.box))
    except NonFiniteOutput as e:
        print(f"error: {args.image}: {e}; nothing written", file=sys.stderr)
        return 3
    mask, alpha = out["mask"], out["alpha"]

    alpha_u8 = np.round(alpha * 255).astype(np.uint8)
    outputs = {
        "mask": mask.astype(np.uint8) * 255,
        "alpha": alpha_u8,
        "cutout": np.concatenate([image, alpha_u8[:, :, None]], axis=2),  # (H, W, 4)
    }
    try:
        save_pngs({targets[name]: array for name, array in outputs.items()})  # all three or none
    except WriteError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {prefix}_mask.png, {prefix}_alpha.png, {prefix}_cutout.png ({w}x{h}; "
          f"mask {mask.mean():.1%} of the image)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
