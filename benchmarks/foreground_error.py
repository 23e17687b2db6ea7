"""The cut-out's colour error on the matting test composites: the composite (the cut-out before)
against the estimated foreground (foreground.py, the cut-out now).

    python -m miniature.synthetic BENCH                   # the synthetic benchmark, once
    python -m benchmarks.foreground_error BENCH/AIM [--checkpoint CKPT --sam-checkpoint SAM]

The folder holds Combined_Dataset/Test_set/Adobe-licensed images/{fg,alpha,merged,alpha_copy,
trimaps} (Composition-1K's layout; given as evaluate.py's --matting: that folder or
Combined_Dataset itself). Each merged image
NAME_K is its foreground fg/NAME over a background, I = alpha F + (1 - alpha) B, so its true
foreground colours F are known. The error is measured against F over the pixels where the true
alpha is partial (0 < alpha < 255), where the composite holds some of the old background: mean
absolute error (0-255 per channel) and mean squared error (colours on 0-1), of the cut-out's uint8
colours. Two alphas: the true one (the estimator alone) and SAMA's prediction (the shipped stand-in
by default, prompted with the box of alpha > 0 as scoring.py scores matting). One thread.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

import readers
from data import mask_to_box
from foreground import cutout
from load_sam_weights import STANDIN_SAM, STANDIN_SAMA, CheckpointError
from outputs import run_main
from predictor import Predictor


def foreground_path(merged: Path) -> Path:
    """merged/NAME_K.png -> fg/NAME.* (one file)."""
    stem = merged.stem.rsplit("_", 1)[0]
    found = [p for p in readers.image_files(merged.parent.parent / "fg") if p.stem == stem]
    if len(found) != 1:
        raise readers.DataError(f"{merged}: {len(found)} foregrounds named {stem} in "
                                f"{merged.parent.parent / 'fg'} (one is needed)")
    return found[0]


class ColourError:
    """Sums over pixels: |x - F| (0-255) and ((x - F) / 255)^2, per channel."""

    def __init__(self) -> None:
        self.abs = self.sq = 0.0
        self.n = 0

    def add(self, colours: np.ndarray, fg: np.ndarray) -> None:
        d = colours.astype(np.float64) - fg.astype(np.float64)  # (N, 3)
        self.abs += np.abs(d).sum()
        self.sq += ((d / 255) ** 2).sum()
        self.n += d.size

    def mae(self) -> float:
        return self.abs / self.n

    def mse(self) -> float:
        return self.sq / self.n


def measure(root, checkpoint: str, sam_checkpoint: str) -> dict[str, dict[str, ColourError]]:
    """{"true alpha" / "SAMA's alpha": {"composite" / "estimate": ColourError}}."""
    triples = readers.composition1k_pairs(root)
    fgs = [foreground_path(merged) for merged, _, _ in triples]  # every file found before work
    predictor = Predictor.from_checkpoint(checkpoint, sam_checkpoint)
    errors = {row: {col: ColourError() for col in ("composite", "estimate")}
              for row in ("true alpha", "SAMA's alpha")}
    for (merged, alpha_path, _), fg_path in zip(triples, fgs):
        image, alpha8 = readers.load_image(merged), readers.load_mask(alpha_path)
        fg = readers.load_image(fg_path)
        partial = (alpha8 > 0) & (alpha8 < 255)
        predictor.set_image(image)
        predicted = predictor.predict(box=mask_to_box(alpha8 > 0))["alpha"]
        for row, alpha in (("true alpha", alpha8 / np.float32(255)), ("SAMA's alpha", predicted)):
            errors[row]["composite"].add(image[partial], fg[partial])
            errors[row]["estimate"].add(cutout(image, alpha, "cpu")[..., :3][partial], fg[partial])
    return errors


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("root", metavar="DIR", help="the folder holding Combined_Dataset, or it")
    p.add_argument("--checkpoint", default=str(STANDIN_SAMA), help="SAMA (default: the stand-in)")
    p.add_argument("--sam-checkpoint", default=None,
                   help="its SAM (default: the one it records; the stand-in's for the stand-in)")
    args = p.parse_args(argv)
    if args.sam_checkpoint is None and args.checkpoint == str(STANDIN_SAMA):
        args.sam_checkpoint = str(STANDIN_SAM)
    return run_main(lambda: report(args), {readers.DataError: 2, CheckpointError: 2})


def report(args) -> int:
    torch.set_num_threads(1)  # the machine is shared
    errors = measure(args.root, args.checkpoint, args.sam_checkpoint)
    n = errors["true alpha"]["composite"].n // 3
    print(f"colour error against the true foreground over the {n} pixels of partial true alpha "
          f"({args.root}):\n")
    print("| alpha | MAE (0-255) composite | MAE estimate | MSE (0-1) composite | MSE estimate |")
    print("|---|---|---|---|---|")
    for row, e in errors.items():
        before, after = e["composite"], e["estimate"]
        print(f"| {row} | {before.mae():.2f} | {after.mae():.2f} | {before.mse():.5f} | "
              f"{after.mse():.5f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
