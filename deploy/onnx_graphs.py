"""SAMA's two ONNX graphs, as SAM's own deployment splits it, and their export (export_onnx.py).

The image path: the frame (1, 3, S, S) and, with MVLE, the same view at twice the resolution
(1, 3, 2S, 2S) -> every tensor SamaPredictor.set_image caches (sama.ImageFeatures: SAM's embedding,
the local tokens after MVLE with F_early, F_early up-sampled for the heads, the positional
encodings by window), through SAMA.encode.
The prompt path: those tensors plus B prompts as SAM's ONNX export reads them, point_coords
(B, N, 2) in frame pixels and point_labels (B, N) (-1 not a point, 0 negative, 1 positive, 2 / 3 a
box's corners), B and N dynamic -> each trained head's maps (seg_logits, alpha: (B, 1, 8G, 8G))
and plain SAM's single-mask logits (sam_logits, (B, 1, 4G, 4G)), through SAM's prompt encoder and
mask decoder and SAMA.decode_tasks, the decoders once over the B prompts. Both graphs call the
model's own methods, so they follow its code as it is.

Left to the caller (sama_onnx.OnnxPredictor does it in numpy, frame.py): the frame (resize,
normalise, pad), the prompt in frame pixels with its padding point, and the maps back at the
image's size. The frame size is fixed (the model's configured image size, as SAM fixes it), one
image at a time. Exporter: torch.onnx.export(dynamo=True), the encoder's attention in its folded
form (one fused attention, no bias tensor; DESIGN.md), no custom operators; weights in external
data beside each graph (ONNX's protobuf stops at 2 GB: ViT-L and ViT-H need it, every variant
uses it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from pathlib import Path
from typing import Optional

import torch
import torch.nn as nn

from deploy.sama_onnx import FORMAT, MANIFEST
from outputs import sha256_file, whole_folder
from sam import Attention
from sama import SAMA, TASKS, ImageFeatures

FEATURES = tuple(f.name for f in dataclasses.fields(ImageFeatures))  # the image path's outputs
OUTPUTS = {"seg": "seg_logits", "matting": "alpha"}  # each trained head's output


class ImagePath(nn.Module):
    """frame (1, 3, S, S)[, frame_2s (1, 3, 2S, 2S)] -> the ImageFeatures tensors (FEATURES)."""

    def __init__(self, sama: SAMA) -> None:
        super().__init__()
        self.sama = sama

    def forward(self, frame: torch.Tensor, frame_2s: Optional[torch.Tensor] = None) -> tuple:
        features = self.sama.encode(frame, frame_2s)
        return tuple(getattr(features, name) for name in FEATURES)


class PromptPath(nn.Module):
    """The ImageFeatures tensors, point_coords (B, N, 2), point_labels (B, N) -> the trained heads'
    maps (seg_logits; alpha, after its sigmoid) and SAM's sam_logits, (B, 1, h, w) each."""

    def __init__(self, sama: SAMA, tasks: tuple[str, ...]) -> None:
        super().__init__()
        self.sama, self.tasks = sama, tasks

    def forward(self, *inputs: torch.Tensor) -> tuple:
        *cached, point_coords, point_labels = inputs
        features = ImageFeatures(*cached)
        sam = self.sama.sam
        sparse = sam.prompt_encoder.embed_points(point_coords, point_labels)  # (B, N, C)
        _, dense = sam.prompt_encoder(None, None, None)  # no mask prompt: (1, C, G, G)
        dense_pe = sam.prompt_encoder.get_dense_pe()
        outputs = [logits if task == "seg" else torch.sigmoid(logits) for task, logits in
                   zip(self.tasks, self.sama.decode_tasks(features, self.tasks, sparse, dense))]
        sam_logits = sam.mask_decoder(features.F_I, dense_pe, sparse, dense, False)[0]
        return (*outputs, sam_logits)


@contextlib.contextmanager
def attention_form(model: nn.Module, form: str):
    """The encoder's attention in `form` for the export, its own form again afterwards."""
    blocks = [m for m in model.modules() if isinstance(m, Attention)]
    before = [m.form for m in blocks]
    for m in blocks:
        m.form = form
    try:
        yield
    finally:
        for m, f in zip(blocks, before):
            m.form = f


def quantize_graph(tmp: Path, name: str) -> None:
    """NAME.int8.onnx (with its .data file) beside NAME.onnx: onnxruntime's dynamic quantization,
    Meta's settings for SAM's decoder (QUInt8 weights, per tensor, full range): the weights of
    every MatMul, Gemm and convolution stored as 8-bit integers, the activations quantized at run
    time."""
    from onnxruntime.quantization import QuantType, quantize_dynamic  # requirements-onnx.txt

    quantize_dynamic(tmp / f"{name}.onnx", tmp / f"{name}.int8.onnx", per_channel=False,
                     reduce_range=False, weight_type=QuantType.QUInt8,
                     use_external_data_format=True)


def export_graphs(sama: SAMA, tasks: tuple[str, ...], threshold: float, out: Path,
                  weights: dict, quantize: bool = False) -> dict:
    """Write image.onnx and prompt.onnx (each with its .data file) and MANIFEST into the folder
    `out`, which must not exist yet (or be empty): the files are written into a temporary folder
    beside it, then renamed into place, all or none. weights: {"sama": {"file", "sha256"},
    "sam": {...}}, recorded in MANIFEST with the tasks and the mask's threshold (the checkpoint's,
    read_sama_checkpoint). quantize: also image.int8.onnx and prompt.int8.onnx (quantize_graph),
    recorded under MANIFEST's "graphs_int8". Returns the manifest, with the seconds each export
    (and quantization) took."""
    tasks = tuple(t for t in TASKS if t in tasks)
    cfg, sama = sama.sam.config, sama.eval()
    S = cfg.image_size
    generator = torch.Generator().manual_seed(0)
    frames = [torch.randn(1, 3, S, S, generator=generator)]
    if sama.use_mvle:
        frames.append(torch.randn(1, 3, 2 * S, 2 * S, generator=generator))
    frame_names = ["frame", "frame_2s"][: len(frames)]
    # example prompts: 2 objects of 3 tokens, one point and a box (a size of 1 would fix its axis)
    point_coords = torch.tensor([[[0.3 * S, 0.4 * S], [0.2 * S, 0.2 * S], [0.7 * S, 0.8 * S]],
                                 [[0.6 * S, 0.5 * S], [0.4 * S, 0.3 * S], [0.9 * S, 0.7 * S]]])
    point_labels = torch.tensor([[1, 2, 3], [1, 2, 3]])
    batch, num_points = torch.export.Dim("batch", min=1), torch.export.Dim("num_points", min=1)
    outputs = [OUTPUTS[t] for t in tasks] + ["sam_logits"]
    seconds = {}
    with whole_folder(out) as tmp:  # renamed to `out` at the end of the block, all or none
        with torch.no_grad(), attention_form(sama, "folded"):
            features = ImagePath(sama)(*frames)
            for name, module, args, inputs, outs, dynamic in (
                ("image", ImagePath(sama).eval(), tuple(frames), frame_names, FEATURES, None),
                ("prompt", PromptPath(sama, tasks).eval(), (*features, point_coords, point_labels),
                 [*FEATURES, "point_coords", "point_labels"], outputs,
                 ((*[None] * len(FEATURES), {0: batch, 1: num_points},
                   {0: batch, 1: num_points}),)),  # *inputs
            ):
                start = time.perf_counter()
                program = torch.onnx.export(module, args, dynamo=True, input_names=inputs,
                                            output_names=list(outs), dynamic_shapes=dynamic,
                                            verbose=False)
                program.save(tmp / f"{name}.onnx", external_data=True)
                seconds[name] = time.perf_counter() - start
                opset = program.model.opset_imports[""]
        kinds = {"graphs": ""}
        if quantize:
            kinds["graphs_int8"] = ".int8"
            for name in ("image", "prompt"):
                start = time.perf_counter()
                quantize_graph(tmp, name)
                seconds[f"{name}.int8"] = time.perf_counter() - start
        files = {
            kind: {
                name: {
                    "file": f"{name}{infix}.onnx",
                    "sha256": sha256_file(tmp / f"{name}{infix}.onnx"),
                    "data": f"{name}{infix}.onnx.data",
                    "data_sha256": sha256_file(tmp / f"{name}{infix}.onnx.data"),
                }
                for name in ("image", "prompt")
            }
            for kind, infix in kinds.items()
        }
        manifest = {
            "format": FORMAT, "variant": cfg.name, "config": sama.config, "tasks": list(tasks),
            "threshold": threshold, "image_size": S, "grid_size": cfg.grid_size, "opset": opset,
            "exporter": f"torch.onnx.export(dynamo=True), torch {torch.__version__}",
            "inputs": {"image": frame_names, "prompt": [*FEATURES, "point_coords", "point_labels"]},
            "outputs": {"image": list(FEATURES), "prompt": outputs},
            "weights": weights, **files,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return {**manifest, "export_seconds": seconds}
