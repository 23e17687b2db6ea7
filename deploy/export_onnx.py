"""Export SAMA to ONNX, the whole model: the image path and the prompt path (onnx_graphs.py).

    python -m deploy.export_onnx --checkpoint runs/sama/sama.pt \\
        --sam-checkpoint sam_vit_b_01ec64.pth --out onnx/sama_vit_b

writes OUT/image.onnx, OUT/prompt.onnx (each with its .onnx.data weights) and OUT/sama_onnx.json
(variant, tasks, frame size, opset, SHA-256 of the weights and of the graphs), all or none; then
predict.py IMG --box ... --onnx OUT runs them on onnxruntime, as sama_onnx.OnnxPredictor does
without torch. --quantize also writes OUT/image.int8.onnx and OUT/prompt.int8.onnx, dynamically
quantized (8-bit weights; OnnxPredictor(OUT, int8=True) runs them; their speed, size and scores
against float32: BENCHMARKS.md).
Needs requirements-onnx.txt. Exit status 2: a bad checkpoint or output folder (one line, nothing
written).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from deploy.onnx_graphs import export_graphs
from load_sam_weights import CheckpointError, load_sama
from outputs import OptionError, run_main


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default="runs/sama/sama.pt", help="SAMA checkpoint")
    p.add_argument("--sam-checkpoint",
                   help="SAM checkpoint (default: the file recorded in the SAMA checkpoint)")
    p.add_argument("--out", required=True, help="folder to create (must not exist, or be empty)")
    p.add_argument("--quantize", action="store_true",
                   help="also write int8 graphs (onnxruntime's dynamic quantization)")
    args = p.parse_args(argv)
    return run_main(lambda: export(args), {CheckpointError: 2})


def export(args) -> int:
    """--out checked and the checkpoint loaded before the export starts."""
    out = Path(args.out)
    if out.exists() and not (out.is_dir() and not any(out.iterdir())):
        raise OptionError(f"{out}: exists and is not an empty folder (choose another --out)")
    folder = next(f for f in (out.parent, *out.parent.parents) if f.exists())
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise OptionError(f"{folder}: cannot create {out} there (choose another --out)")
    model = load_sama(args.checkpoint, args.sam_checkpoint, device="cpu")
    record = model.checkpoint_record  # paths and SHA-256 of the bytes loaded
    weights = {name: {"file": r.file, "sha256": r.sha256}
               for name, r in (("sama", record), ("sam", record.sam))}
    manifest = export_graphs(model, record.tasks, record.threshold, out, weights, args.quantize)
    sizes = ", ".join(
        f"{name}{infix} "
        f"{sum((out / g[k]).stat().st_size for k in ('file', 'data')) / 2**20:,.1f} MiB "
        f"in {manifest['export_seconds'][name + infix]:.1f} s"
        for kind, infix in (("graphs", ""), ("graphs_int8", ".int8")) if kind in manifest
        for name, g in manifest[kind].items())
    print(f"wrote {out}: {manifest['variant']}, tasks {' + '.join(manifest['tasks'])}, "
          f"{manifest['image_size']} px frames, opset {manifest['opset']}; {sizes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
