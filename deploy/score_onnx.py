"""What int8 costs in quality: the export's PyTorch model, its float32 graphs and its int8 graphs
scored side by side on one split, like for like: the same images, the same prompts, the same
protocol (scoring.score_split, evaluate.py's), the PNGs each writes.

    python -m deploy.export_onnx --checkpoint weights/sama_standin.pt \\
        --sam-checkpoint weights/sam_standin.pth --out onnx/standin --quantize
    python -m deploy.score_onnx onnx/standin --split DIS-TE1 --root BENCH/DIS5K
    python -m deploy.score_onnx onnx/standin --split Composition-1K --root BENCH/AIM

The PyTorch model is read from the files the manifest names, refused unless their SHA-256 is the
one recorded at the export. Prints each metric of the three and int8's change against float32.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import readers
from deploy.sama_onnx import OnnxPredictor, read_manifest
from outputs import run_main
from predictor import Predictor
from scoring import MATTING_KEYS, SEG_KEYS, score_split


def score_three(onnx: Path, split_name: str, root: Path) -> dict[str, dict]:
    """{"PyTorch", "ONNX float32", "ONNX int8"} -> the split's scores (score_split's)."""
    weights = read_manifest(onnx, int8=True)["weights"]
    torch_p = Predictor.from_checkpoint(weights["sama"]["file"], weights["sam"]["file"])
    record = torch_p.model.checkpoint_record
    if (record.sha256, record.sam.sha256) != (weights["sama"]["sha256"], weights["sam"]["sha256"]):
        raise ValueError(f"{weights['sama']['file']}: not the weights {onnx} was exported from")
    predictors = {"PyTorch": torch_p, "ONNX float32": OnnxPredictor(onnx),
                  "ONNX int8": OnnxPredictor(onnx, int8=True)}
    split = readers.SPLITS[split_name]
    pairs = split.reader(root)
    with tempfile.TemporaryDirectory() as tmp:
        return {name: score_split(split_name, split, pairs, Path(tmp) / name.replace(" ", "-"),
                                  predictor, resume=False, progress=False)[0]
                for name, predictor in predictors.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("onnx", help="a folder written by export_onnx.py --quantize")
    p.add_argument("--split", required=True, choices=[n for n, s in readers.SPLITS.items()
                                                      if s.scored and s.kind != "points"])
    p.add_argument("--root", required=True, help="the split's folder (DIS5K, or AIM's)")
    args = p.parse_args(argv)
    # OnnxError, readers.DataError and other weights are ValueErrors: one line each
    return run_main(lambda: print_three(args), {ValueError: 2})


def print_three(args) -> int:
    scores = score_three(Path(args.onnx), args.split, Path(args.root))
    keys = SEG_KEYS if readers.SPLITS[args.split].kind == "seg" else MATTING_KEYS
    print(f"{args.split}, every image ({args.onnx}):")
    print(f"{'':14}" + "".join(f"{k:>11}" for k in keys))
    for name, s in scores.items():
        print(f"{name:14}" + "".join(f"{s[k]:11.4f}" for k in keys))
    print(f"{'int8 - fp32':14}"
          + "".join(f"{scores['ONNX int8'][k] - scores['ONNX float32'][k]:+11.4f}" for k in keys))
    return 0


if __name__ == "__main__":
    sys.exit(main())
