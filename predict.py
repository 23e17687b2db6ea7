"""Segment and matte one image with SAMA from a box and / or points.

    python predict.py photo.jpg --box 40 30 420 380       # runs/sama/sama.pt, or the stand-in
    python predict.py photo.jpg --box 40 30 420 380 --checkpoint runs/sama-seg/sama.pt
    python predict.py photo.jpg --point 200 150 --point 260 170 --neg-point 30 30 --out cut/photo
    python predict.py photo.jpg --box 40 30 420 380 --onnx onnx/sama   # deploy/export_onnx.py's
    python predict.py photo.jpg --box 40 30 420 380 --onnx onnx/sama --int8   # its --quantize
    python predict.py photo.jpg --box 40 30 420 380 --box 500 60 700 400   # many objects
    python predict.py photo.jpg --everything              # every object of the image

writes PREFIX_mask.png (0 / 255), PREFIX_alpha.png (0-255) and PREFIX_cutout.png (RGBA: the
foreground's colours, estimated from the image and the alpha by foreground.py so that no old
background shows in soft edges, with the alpha as its transparency), all in the image's own size
and orientation (EXIF applied), all three or none. --box repeats: one object per box, all in one
call of the predictor (the decoders once over the boxes), written as PREFIX_0_mask.png,
PREFIX_0_alpha.png, PREFIX_0_cutout.png, PREFIX_1_mask.png, ... in the order given, every file or
none; --point and --neg-point then are refused (they belong to one object). PREFIX defaults to the
image path without its extension. Coordinates are pixels of the image as displayed (after EXIF
rotation), x to the right, y down. The mask is the segmentation probability above the threshold
the checkpoint records (0.5 if none); a model trained for one task gives both maps from its
trained head (see Predictor). Exit status 2: a bad prompt (of many boxes, the bad one named),
image, checkpoint or output path, or a failed write (one line, nothing written); 3: the model's
output holds NaN or inf (nothing written).

Without --checkpoint: the training run's runs/sama/sama.pt if there is one, else the shipped
stand-in weights/sama_standin.pt (on weights/sam_standin.pth), as the web page (app.py); a line
says which. A box partly outside the image is clipped to it, with a line saying so; a box wholly
outside, and a point outside, are refused. --onnx takes no --checkpoint or --sam-checkpoint;
--int8 (only with --onnx) runs the export's int8 graphs (export_onnx.py --quantize).

--everything (no prompt): SAM's automatic mask generation finds the objects (predictor.every_object:
a grid of points, the predicted-IoU and stability filters, box NMS; the thresholds recorded beside
the SAM checkpoint, else Meta's), SAMA refines each from its box; writes PREFIX_objects.json, a list
with one entry per object, highest predicted IoU first (its box xyxy in inclusive pixels, its
predicted IoU and stability score, the grid point that found it and its files), and
PREFIX_{i}_mask.png, PREFIX_{i}_alpha.png, PREFIX_{i}_cutout.png for i = 0, 1, ..., all or none.
Nothing found: a line says so and the list is empty. With --overwrite, the files of an earlier run's
objects beyond this run's count are removed. Not with --onnx (the exported graphs hold no multimask
point decoder).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import sys
from pathlib import Path
from typing import Optional

import numpy as np

# torch-free, all of them: with --onnx, the maps come from onnxruntime, numpy and pillow alone
# (the checkpoints' path imports torch in checkpoint_predictor, --onnx deploy/ in onnx_predictor;
# the cutout's colours, frame.output_images, torch in foreground.py)
import readers
from frame import NonFiniteOutput, PromptError, check_prompt, output_images
from outputs import (
    OptionError,
    WriteError,
    remove_stale_temporaries,
    run_main,
    save_pngs,
    write_text,
)

TRAINED = Path("runs/sama/sama.pt")  # train.py's run, where the command is started
KINDS = ("mask", "alpha", "cutout")  # the files written for each object


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------


def pairs(values: list[float], option: str) -> np.ndarray:
    """[x0, y0, x1, y1, ...] -> (N, 2); an odd count is an error."""
    if len(values) % 2:
        raise PromptError(f"{option} takes x y pairs, got {len(values)} values")
    return np.asarray(values, dtype=np.float64).reshape(-1, 2)


def check_outputs(paths: list[Path], image: Optional[Path] = None,
                  overwrite: bool = False) -> None:
    """Refuse, before any work, outputs that cannot be written: a target that is a folder, a folder
    under a file, a folder without write permission; the input image itself, always; an existing
    file, unless overwrite."""
    for path in paths:
        if path.is_dir():
            raise WriteError(f"{path}: is a folder, not a file (choose another --out)")
        if image is not None and path.exists() and os.path.samefile(path, image):
            raise WriteError(f"{path}: is the input image; choose another --out")
        if path.exists() and not overwrite:
            raise WriteError(f"{path}: exists; --overwrite replaces it, or choose another --out")
    folder = next(f for f in (paths[0].parent, *paths[0].parent.parents) if f.exists())
    if not folder.is_dir():
        raise WriteError(f"{folder}: is a file, so {paths[0].parent} cannot be a folder "
                         f"(choose another --out)")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise WriteError(f"{folder}: no permission to write there (choose another --out)")


class ModelError(ValueError):
    """A checkpoint or an ONNX export that cannot be loaded (load_sam_weights.CheckpointError,
    deploy.sama_onnx.OnnxError; one line)."""


def checkpoint_predictor(checkpoint: str, sam_checkpoint: Optional[str]):
    """SAMA from its checkpoints on PyTorch (the GPU if there is one), behind predictor.Predictor:
    the mask at the threshold the checkpoint records, a single-task model read through its trained
    head. torch is imported here, not at the top, so that --onnx runs without it."""
    import torch

    from load_sam_weights import CheckpointError
    from predictor import Predictor, keep_freed_cpu_memory

    keep_freed_cpu_memory()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        return Predictor.from_checkpoint(checkpoint, sam_checkpoint, device=device)
    except CheckpointError as e:
        raise ModelError(str(e)) from None


def onnx_predictor(folder: str, int8: bool = False):
    """The graphs deploy/export_onnx.py wrote into `folder` (with int8, its --quantize graphs), on
    onnxruntime behind the same contract (deploy/sama_onnx.py, imported here: the core imports no
    folder until --onnx)."""
    from deploy.sama_onnx import OnnxError, OnnxPredictor

    try:
        return OnnxPredictor(folder, int8=int8)
    except OnnxError as e:
        raise ModelError(str(e)) from None


def default_checkpoints(args) -> tuple[str, Optional[str]]:
    """--checkpoint and --sam-checkpoint, or the default (said in one line): the training run's
    file if there is one, else the shipped stand-in on its SAM."""
    if args.checkpoint:
        return args.checkpoint, args.sam_checkpoint
    if TRAINED.is_file():
        print(f"no --checkpoint: the training run's {TRAINED}")
        return str(TRAINED), args.sam_checkpoint
    from load_sam_weights import STANDIN_SAM, STANDIN_SAMA  # torch: not imported with --onnx

    print(f"no --checkpoint and no {TRAINED}: the shipped stand-in {STANDIN_SAMA} (train.py makes "
          f"your own)")
    return str(STANDIN_SAMA), args.sam_checkpoint or str(STANDIN_SAM)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("image")
    p.add_argument("--box", type=float, nargs=4, action="append", metavar=("X0", "Y0", "X1", "Y1"),
                   help="a box around the object; may repeat: one object per box")
    p.add_argument("--point", type=float, nargs="+", action="extend", default=[], metavar="X Y",
                   help="positive point(s): x y [x y ...]; may repeat")
    p.add_argument("--neg-point", type=float, nargs="+", action="extend", default=[], metavar="X Y",
                   help="negative point(s): x y [x y ...]; may repeat")
    p.add_argument("--checkpoint", help=f"SAMA checkpoint (default: {TRAINED} if it exists, "
                                         f"else the shipped stand-in)")
    p.add_argument("--sam-checkpoint",
                   help="SAM checkpoint (default: the file recorded in the SAMA checkpoint; the "
                        "shipped stand-in SAM for the stand-in)")
    p.add_argument("--out", help="output prefix (default: the image path without its extension); "
                                 "a folder (existing, or ending in /): the image's name in it")
    p.add_argument("--overwrite", action="store_true", help="replace outputs that exist already")
    p.add_argument("--onnx", metavar="DIR", help="run the graphs deploy/export_onnx.py wrote into "
                   "DIR on onnxruntime (OnnxPredictor) instead of the checkpoints")
    p.add_argument("--int8", action="store_true", help="with --onnx: the export's int8 graphs "
                   "(export_onnx.py --quantize)")
    p.add_argument("--everything", action="store_true",
                   help="every object of the image, no prompt: PREFIX_objects.json and "
                        "PREFIX_{i}_{mask,alpha,cutout}.png")
    args = p.parse_args(argv)
    return run_main(lambda: predict(args), {NonFiniteOutput: 3, PromptError: 2,
                                            readers.DataError: 2, ModelError: 2, WriteError: 2},
                    "interrupted; the PNGs are written all or none")


def output_prefix(args) -> Path:
    """--out, or the image path without its extension; a folder: the image's name in it."""
    prefix = Path(args.out) if args.out else Path(args.image).with_suffix("")
    if args.out and (args.out.endswith(("/", os.sep)) or prefix.is_dir()):
        prefix = prefix / Path(args.image).stem  # --out dir/: dir/photo_mask.png, not dir_mask.png
    return prefix


def predict(args) -> int:
    """Everything checked before the model runs; then the three PNGs, all or none."""
    if args.int8 and not args.onnx:
        raise OptionError("--int8: only with --onnx (the int8 graphs of export_onnx.py --quantize)")
    if args.everything:
        return predict_everything(args)
    if args.onnx and (args.sam_checkpoint or args.checkpoint):
        option = "--checkpoint" if args.checkpoint else "--sam-checkpoint"
        raise OptionError(f"{option}: --onnx runs the exported graphs, not a checkpoint")
    prefix = output_prefix(args)
    boxes = args.box or [None]  # one object per box; without a box, one object from its points
    many = len(boxes) > 1
    names = [f"{i}_" if many else "" for i in range(len(boxes))]  # OUT_0_mask.png, ... or OUT_mask
    targets = [{kind: Path(f"{prefix}_{name}{kind}.png") for kind in KINDS} for name in names]
    # EXIF orientation applied: outputs match what viewers show
    image = readers.load_image(args.image)
    h, w = image.shape[:2]
    pos, neg = pairs(args.point, "--point"), pairs(args.neg_point, "--neg-point")
    points = np.concatenate([pos, neg])
    if many and len(points):
        option = "--point" if len(pos) else "--neg-point"
        raise OptionError(f"{option}: with one --box only (each of {len(boxes)} boxes is an "
                          f"object of its own)")
    checked, notices = [], []
    for i, box in enumerate(boxes):
        try:
            box, notice = check_prompt(box, points, h, w)
        except PromptError as e:
            raise PromptError(f"--box {i} of {len(boxes)}: {e}" if many else str(e)) from None
        checked.append(box)
        if notice:
            notices.append(f"--box {i} of {len(boxes)}: {notice}" if many else notice)
    check_outputs([path for files in targets for path in files.values()], Path(args.image),
                  args.overwrite)
    if args.onnx:
        predictor = onnx_predictor(args.onnx, args.int8)
    else:
        predictor = checkpoint_predictor(*default_checkpoints(args))
    for notice in notices:
        print(notice)

    predictor.set_image(image)
    labels = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))]).astype(np.int64)
    try:
        if many:  # (B, 4) boxes: (B, H, W) maps, the decoders once over them
            out = predictor.predict(box=np.stack(checked))
            maps = [{name: m[i] for name, m in out.items()} for i in range(len(checked))]
        else:
            maps = [predictor.predict(points if len(points) else None,
                                      labels if len(points) else None, checked[0])]
    except NonFiniteOutput as e:
        raise NonFiniteOutput(f"{args.image}: {e}; nothing written") from None
    images = [output_images(image, one) for one in maps]
    # the temporary files of an earlier run of this prefix killed mid-write
    remove_stale_temporaries(prefix.parent, re.compile(
        rf"{re.escape(prefix.name)}_(?:\d+_)?(?:mask|alpha|cutout)\.png\.tmp-(\d+)"))
    save_pngs({files[kind]: array for files, outputs in zip(targets, images)
               for kind, array in outputs.items()})  # every file or none
    for name, outputs in zip(names, images):
        print(f"wrote {prefix}_{name}mask.png, {prefix}_{name}alpha.png, "
              f"{prefix}_{name}cutout.png ({w}x{h}; mask {(outputs['mask'] > 0).mean():.1%} of the "
              f"image)")
    return 0


# ----------------------------------------------------------------------------------------------
# --everything: every object of the image
# ----------------------------------------------------------------------------------------------

OBJECT_FILE = re.compile(r"_(\d+)_(?:mask|alpha|cutout)\.png")


def object_files(prefix: Path) -> dict[Path, int]:
    """The files PREFIX_{i}_{mask,alpha,cutout}.png there are, with their i."""
    if not prefix.parent.is_dir():
        return {}
    found = {}
    for path in prefix.parent.glob(f"{glob.escape(prefix.name)}_*.png"):
        match = OBJECT_FILE.fullmatch(path.name[len(prefix.name):])
        if match:
            found[path] = int(match.group(1))
    return found


def predict_everything(args) -> int:
    """Every object: checked before the model runs, then PREFIX_objects.json and each object's
    three PNGs, all or none."""
    given = [o for o, v in (("--box", args.box), ("--point", args.point),
                            ("--neg-point", args.neg_point), ("--onnx", args.onnx)) if v]
    if given:
        why = ("the exported graphs hold no multimask point decoder" if given[0] == "--onnx"
               else "it finds the objects itself, without a prompt")
        raise OptionError(f"{given[0]}: not with --everything ({why})")
    prefix = output_prefix(args)
    listing = Path(f"{prefix}_objects.json")
    earlier = object_files(prefix)
    check_outputs([listing, *sorted(earlier)], Path(args.image), args.overwrite)
    image = readers.load_image(args.image)
    h, w = image.shape[:2]
    predictor = checkpoint_predictor(*default_checkpoints(args))

    # torch: not imported with --onnx
    from predictor import SettingsError, box_text, every_object, settings_for

    try:
        settings = settings_for(predictor.sam)
    except SettingsError as e:
        raise ModelError(str(e)) from None
    print(f"finding objects: a {settings.points_per_side} x {settings.points_per_side} grid of "
          f"points, predicted IoU > {settings.pred_iou_thresh}, stability >= "
          f"{settings.stability_score_thresh}, box NMS at {settings.box_nms_thresh}")
    try:
        found, maps = every_object(predictor, image, settings)
    except NonFiniteOutput as e:
        raise NonFiniteOutput(f"{args.image}: {e}; nothing written") from None
    entries, images = [], {}
    for i, (f, m) in enumerate(zip(found, maps)):
        names = {name: f"{prefix.name}_{i}_{name}.png" for name in ("mask", "alpha", "cutout")}
        for name, array in output_images(image, m).items():
            images[prefix.parent / names[name]] = array
        entries.append({"box": box_text(f.box), "predicted_iou": f.predicted_iou,
                        "stability_score": f.stability, "point": box_text(f.point),
                        "files": names})
    remove_stale_temporaries(prefix.parent, re.compile(
        rf"{re.escape(prefix.name)}_(?:objects\.json|\d+_(?:mask|alpha|cutout)\.png)"
        rf"\.tmp-(\d+)"))
    save_pngs(images)  # all or none
    try:
        write_text(json.dumps(entries, indent=1) + "\n", listing)
    except WriteError:
        for path in images:
            path.unlink(missing_ok=True)
        raise
    for path, i in earlier.items():  # an earlier run's objects beyond this run's (--overwrite)
        if i >= len(found):
            path.unlink(missing_ok=True)
    if not found:
        print(f"no object found in {args.image} ({w}x{h}); wrote {listing} (an empty list)")
    else:
        print(f"wrote {listing} and {prefix}_{{0..{len(found) - 1}}}_{{mask,alpha,cutout}}.png "
              f"({len(found)} objects, {w}x{h})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
