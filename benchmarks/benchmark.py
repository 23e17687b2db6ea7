"""SAM vs SAMA, side by side in one run: time per image, time per prompt, peak memory, and the
multiply-adds of SAM's image and of SAMA's prompt; the parameter overhead; and each optimisation
the code keeps against its textbook form.

    python -m benchmarks.benchmark           # tiny at 256 px and ViT-B at 512 px (CPU-friendly)
    python -m benchmarks.benchmark --variants vit_b --image-size 1024 --device cuda [--bf16]
    python -m benchmarks.benchmark --params  # SAM's parameters and what SAMA adds, per module
    python -m benchmarks.benchmark --optimisations --variants vit_b --image-size 1024
    python -m benchmarks.benchmark --variants vit_b vit_h --device cuda --bf16 --meta  # + Meta's
    python -m benchmarks.benchmark --train --variants vit_l --device cuda [--compile]  # train.py
    python -m benchmarks.benchmark --onnx [--device cuda]  # SAMA in PyTorch and in ONNX
    python -m benchmarks.benchmark --many --objects 1 8 32  # B boxes in one call vs B calls
    python -m benchmarks.benchmark --profile --variants vit_b --image-size 1024  # by operator

Per image = set_image (encoder; SAMA: five views and MVLE) + one box prompt.
Per prompt = one more box prompt on the cached image features (SAMA: its two task passes and the
plain-SAM pass it reports beside them, replayed from a CUDA graph on CUDA). Each repetition times
SAM and SAMA back to back and the medians are compared, so a noisy machine affects both alike.
--onnx: the same per image and per prompt, SAMA's PyTorch predictor against its ONNX export
(sama_onnx.OnnxPredictor; onnxruntime-gpu's CUDA provider with --device cuda), and the peak memory
of each in a fresh process (the ONNX one without torch).
--many: the time per object of B boxes in one Predictor.predict call against B calls of one box,
PyTorch and ONNX (--no-onnx: PyTorch only), for each B of --objects (default 1 8 32).
--profile: where a prompt's and an image's time goes on the CPU, operator by operator (PyTorch's
profiler; with --onnx, onnxruntime's profile of the ONNX image graph beside it).
Random weights: speed does not depend on their values. A reduced --image-size keeps every layer
but shrinks the token grid (labelled). BENCHMARKS.md holds the numbers.
One kind of run at a time (--params, --train, --optimisations, --onnx, --many, --profile or the
side-by-side run; --onnx beside --profile adds the ONNX graph); an option another kind would
ignore (--steps elsewhere than --train, --objects elsewhere than --many, --meta beside another
kind, --bf16 or --image-size with --params or --train) is refused.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import importlib.util
import json
import multiprocessing
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn as nn
from PIL import Image
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from frame import prompt_bytes
from miniature import synthetic
from outputs import provenance
from predictor import Predictor, keep_freed_cpu_memory
from sam import SAM_VARIANTS, Attention, Sam, SamPredictor, postprocess_masks, prompt_tensors
from sama import SAMA, TASKS, SamaPredictor

ROOT = Path(__file__).resolve().parents[1]  # where train.py and the snippets run


def timed(fn: Callable, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t


def medians(runs: dict[str, Callable], device: torch.device, reps: int) -> dict[str, float]:
    """Every run once to warm up (allocator, kernels), then `reps` rounds of every run back to
    back: each run's median seconds."""
    for fn in runs.values():
        fn()
    times = {name: [] for name in runs}
    for _ in range(reps):
        for name, fn in runs.items():
            times[name].append(timed(fn, device))
    return {name: statistics.median(t) for name, t in times.items()}


def peak_memory(fn: Callable, device: torch.device) -> str:
    """Peak GPU memory of fn on CUDA; on the CPU the process's peak RSS so far (an upper bound)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        return f"{torch.cuda.max_memory_allocated(device) / 2**20:,.0f} MiB (GPU)"
    fn()
    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB (process RSS)"


def multiply_adds(fn: Callable) -> int:
    """The multiply-adds fn runs in matrix products, attention and convolutions (PyTorch's
    FlopCounterMode counts two FLOPs per multiply-add, and nothing elementwise): the arithmetic a
    run cannot avoid, whatever its kernels' speed. Attention runs in its math form here, whose
    matrix products the counter sees (it counts nothing in the fused CPU kernel)."""
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() // 2


def test_image(image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """A random 3:4 image whose long side is the frame, and a box prompt on it."""
    h, w = int(image_size * 0.75), image_size
    image = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return image, np.array([w * 0.2, h * 0.2, w * 0.8, h * 0.7])


def models(variant: str, image_size: int, device: torch.device) -> tuple[Sam, SAMA]:
    torch.manual_seed(0)
    cfg = dataclasses.replace(SAM_VARIANTS[variant], image_size=image_size)
    sam = Sam(cfg).to(device).eval()
    return sam, SAMA(sam).to(device).eval()


def label(
    variant: str, image_size: int, device: torch.device, dtype: torch.dtype, reps: int
) -> str:
    reduced = "" if image_size == SAM_VARIANTS[variant].image_size else " (reduced)"
    return (f"{variant} at {image_size} px{reduced}, {device}, {str(dtype).replace('torch.', '')}, "
            f"median of {reps}")


# ----------------------------------------------------------------------------------------------
# SAM vs SAMA
# ----------------------------------------------------------------------------------------------


def meta_predictor(sam: Sam):
    """Meta's SamPredictor (the `segment-anything` package, requirements-dev) on sam's weights: the
    checkpoint's key names are sam's attribute names."""
    from tests.conftest import build_official_sam, import_official  # imports it without torchvision

    meta = build_official_sam(sam.config).to(next(sam.parameters()).device)
    meta.load_state_dict(sam.state_dict())
    return import_official().SamPredictor(meta)


def bench(
    variant: str, image_size: int, device: torch.device, reps: int, dtype: torch.dtype,
    with_meta: bool,
) -> None:
    sam, sama = models(variant, image_size, device)
    sam_p, sama_p = SamPredictor(sam), Predictor(sama, TASKS)  # SAM's official API, the contract
    image, box = test_image(image_size)
    frames = torch.randn(5, 3, image_size, image_size, device=device)
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)
    meta_runs = {}
    if with_meta:
        meta_p = meta_predictor(sam)

        def meta_prompt():  # Meta's predict, less its numpy conversion (which refuses bf16)
            boxes = meta_p.transform.apply_boxes(box[None], meta_p.original_size)
            masks, iou, _ = meta_p.predict_torch(
                None, None, torch.as_tensor(boxes, device=device), multimask_output=False)
            masks.cpu(), iou.float().cpu()

        meta_runs = {
            "meta_image": lambda: (meta_p.set_image(image), meta_prompt()),
            "meta_prompt": meta_prompt,
            "meta_encoder_1": lambda: meta_p.model.image_encoder(frames[:1]),
        }

    def sam_image():
        sam_p.set_image(image)
        sam_p.predict(box=box, multimask_output=False)

    def sama_image():
        sama_p.set_image(image)
        sama_p.predict(box=box)

    runs = {
        "sam_image": sam_image,
        "sama_image": sama_image,
        "sam_prompt": lambda: sam_p.predict(box=box, multimask_output=False),
        "sama_prompt": lambda: sama_p.predict(box=box),
        "encoder_1": lambda: sam.image_encoder(frames[:1]),
        "encoder_5": lambda: sam.image_encoder(frames),  # SAMA's floor: its five-view batch
        **meta_runs,
    }
    with torch.inference_mode(), autocast:
        med = medians(runs, device, reps)
        # a prompt's parts, SAMA.fast_prompt's form and the textbook form back to back
        splits = {"fast form": [], "textbook form": []}
        for _ in range(reps):
            for form in splits:
                SAMA.fast_prompt = form == "fast form"
                splits[form].append(prompt_split(sama_p, box, device, 1))
        SAMA.fast_prompt = True
        mem_sam = peak_memory(sam_image, device)
        mem_sama = peak_memory(sama_image, device)
        macs = {name: multiply_adds(runs[name]) for name in ("sam_image", "sama_prompt")}

    ms = {k: f"{v * 1e3:9.1f} ms" for k, v in med.items()}
    print(f"\n{label(variant, image_size, device, dtype, reps)}")
    print(f"  per image : SAM {ms['sam_image']}   SAMA {ms['sama_image']}   "
          f"ratio {med['sama_image'] / med['sam_image']:.2f}x (target <= 5.2x)")
    print(f"    the encoder alone: one view {ms['encoder_1']}, five views {ms['encoder_5']} "
          f"({med['encoder_5'] / med['encoder_1']:.2f}x)")
    print(f"  per prompt: SAM {ms['sam_prompt']}   SAMA {ms['sama_prompt']}   "
          f"ratio {med['sama_prompt'] / med['sam_prompt']:.2f}x SAM's prompt")
    print(f"  SAMA per prompt / SAM per image: {med['sama_prompt'] / med['sam_image']:.1%}")
    split = {form: {k: statistics.median(s[k] for s in runs) for k in runs[0]}
             for form, runs in splits.items()}
    for name, s in split.items():
        print(f"  a prompt's parts, SAMA.fast_prompt's {name}: {s['prompt'] * 1e3:.1f} ms = SAM's "
              f"pass {s['sam_pass'] * 1e3:.1f} ms + the two SAMA passes "
              f"{s['sama_passes'] * 1e3:.1f} ms (two-way transformer with the adapters "
              f"{s['transformer'] * 1e3:.1f}, SAM's up-scaling of F'_out "
              f"{s['upscaling'] * 1e3:.1f}, heads {s['heads'] * 1e3:.1f}) + the resize to the "
              f"image {s['resize'] * 1e3:.1f} ms + the rest")
    fast, textbook = split["fast form"]["prompt"], split["textbook form"]["prompt"]
    print(f"  fast / textbook form per prompt: {fast / textbook:.2f}x; SAMA per prompt / SAM per "
          f"image: {fast / med['sam_image']:.1%} (fast), {textbook / med['sam_image']:.1%} "
          f"(textbook)")
    print(f"  multiply-adds (matrix products, attention, convolutions): SAM per image "
          f"{macs['sam_image'] / 1e9:.2f} G, SAMA per prompt {macs['sama_prompt'] / 1e9:.2f} G: "
          f"{macs['sama_prompt'] / macs['sam_image']:.1%} of SAM's image (the time's share above)")
    print(f"  peak memory: SAM {mem_sam}, SAMA {mem_sama}")
    if with_meta:
        print(f"  Meta's SAM on the same weights: per image {ms['meta_image']} "
              f"({med['meta_image'] / med['sam_image']:.2f}x ours), encoder one view "
              f"{ms['meta_encoder_1']} ({med['meta_encoder_1'] / med['encoder_1']:.2f}x ours, "
              f"target >= 2.5x bf16, >= 1.2x float32), per prompt {ms['meta_prompt']} "
              f"({med['meta_prompt'] / med['sam_prompt']:.2f}x ours)")


# ----------------------------------------------------------------------------------------------
# SAMA in PyTorch and in ONNX: python -m benchmarks.benchmark --onnx
# ----------------------------------------------------------------------------------------------

# one image and one box prompt in a fresh process, then its peak RSS in MiB: VmHWM, the process's
# own (Linux keeps ru_maxrss across exec: a child would report its parent's peak)
PEAK = "print(next(int(l.split()[1]) for l in open('/proc/self/status') if 'VmHWM' in l) / 1024)\n"
PEAK_RSS = {
    "pytorch": (
        "import sys, numpy as np, torch\n"
        "from benchmarks import benchmark\n"
        "benchmark.keep_freed_cpu_memory()\n"
        "_, sama = benchmark.models(sys.argv[1], int(sys.argv[2]), torch.device('cpu'))\n"
        "p = benchmark.Predictor(sama, benchmark.TASKS)\n"
        "with torch.inference_mode():\n"
        "    p.set_image(np.load(sys.argv[3])); p.predict(box=np.load(sys.argv[4]))\n"
        + PEAK
    ),
    "onnx": (
        "import sys, numpy as np\n"
        "from deploy.sama_onnx import OnnxPredictor\n"
        "p = OnnxPredictor(sys.argv[5])\n"
        "p.set_image(np.load(sys.argv[3])); p.predict(box=np.load(sys.argv[4]))\n"
        + PEAK
    ),
}


def bench_onnx(variant: str, image_size: int, device: torch.device, reps: int) -> None:
    """predictor.Predictor and OnnxPredictor (one contract) on the same random weights, back to
    back in each repetition: per image (set_image and a box prompt) and per prompt; peak memory of
    each in a fresh process on the CPU."""
    import onnxruntime  # requirements-onnx.txt: imported by --onnx only

    from deploy.onnx_graphs import export_graphs
    from deploy.sama_onnx import OnnxPredictor
    from load_sam_weights import DEFAULT_THRESHOLD

    providers = ["CPUExecutionProvider"]
    if device.type == "cuda":
        if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            raise SystemExit("benchmark.py --onnx --device cuda: onnxruntime has no CUDA provider "
                             "(pip install onnxruntime-gpu in place of onnxruntime)")
        providers.insert(0, "CUDAExecutionProvider")
    _, sama = models(variant, image_size, device)
    _, sama_cpu = models(variant, image_size, torch.device("cpu"))  # the same weights (seed 0)
    image, box = test_image(image_size)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "onnx"
        manifest = export_graphs(sama_cpu, TASKS, DEFAULT_THRESHOLD, folder, weights={},
                                 quantize=True)
        del sama_cpu
        size = {kind: sum((folder / g[k]).stat().st_size for g in manifest[kind].values()
                          for k in ("file", "data")) / 2**20
                for kind in ("graphs", "graphs_int8")}
        threads = torch.get_num_threads()  # onnxruntime's intra-op threads: as many as PyTorch's
        torch_p = Predictor(sama, TASKS)
        onnx_p = OnnxPredictor(folder, providers=providers, threads=threads)
        int8_p = OnnxPredictor(folder, providers=providers, threads=threads, int8=True)
        runs = {
            "torch_image": lambda: (torch_p.set_image(image), torch_p.predict(box=box)),
            "onnx_image": lambda: (onnx_p.set_image(image), onnx_p.predict(box=box)),
            "int8_image": lambda: (int8_p.set_image(image), int8_p.predict(box=box)),
            "torch_prompt": lambda: torch_p.predict(box=box),
            "onnx_prompt": lambda: onnx_p.predict(box=box),
            "int8_prompt": lambda: int8_p.predict(box=box),
        }
        with torch.inference_mode():
            med = medians(runs, device, reps)
        memory = "not measured on CUDA (onnxruntime's arena is its own)"
        if device.type == "cpu":
            np.save(Path(tmp) / "image.npy", image)
            np.save(Path(tmp) / "box.npy", box)
            argv = [variant, str(image_size), str(Path(tmp) / "image.npy"),
                    str(Path(tmp) / "box.npy"), str(folder)]
            rss = {kind: float(subprocess.run([sys.executable, "-c", code, *argv], cwd=ROOT,
                                              check=True, capture_output=True,
                                              text=True).stdout.split()[-1])
                   for kind, code in PEAK_RSS.items()}
            memory = (f"PyTorch {rss['pytorch']:,.0f} MiB, ONNX {rss['onnx']:,.0f} MiB "
                      f"({rss['onnx'] / rss['pytorch']:.2f}x; fresh processes, peak RSS)")
    ms = {k: f"{v * 1e3:9.1f} ms" for k, v in med.items()}
    where = providers[0].replace("ExecutionProvider", "")
    print(f"\nSAMA {label(variant, image_size, device, torch.float32, reps)}, {threads} "
          f"thread(s): PyTorch vs ONNX (onnxruntime {onnxruntime.__version__}, {where}; export "
          f"{size['graphs']:,.1f} MiB, {sum(manifest['export_seconds'].values()):.0f} s)")
    print(f"  per image : PyTorch {ms['torch_image']}   ONNX {ms['onnx_image']}   "
          f"ratio {med['onnx_image'] / med['torch_image']:.2f}x")
    print(f"  per prompt: PyTorch {ms['torch_prompt']}   ONNX {ms['onnx_prompt']}   "
          f"ratio {med['onnx_prompt'] / med['torch_prompt']:.2f}x")
    print(f"  int8 (export_onnx.py --quantize) against ONNX float32: per image {ms['int8_image']} "
          f"({med['int8_image'] / med['onnx_image']:.2f}x), per prompt {ms['int8_prompt']} "
          f"({med['int8_prompt'] / med['onnx_prompt']:.2f}x), graphs {size['graphs_int8']:,.1f} "
          f"MiB against {size['graphs']:,.1f} MiB ({size['graphs_int8'] / size['graphs']:.2f}x)")
    print(f"  peak memory: {memory}")


# ----------------------------------------------------------------------------------------------
# Many prompts in one call: python -m benchmarks.benchmark --many
# ----------------------------------------------------------------------------------------------


def boxes_on(image: np.ndarray, count: int) -> np.ndarray:
    """count random boxes (x0 y0 x1 y1), each at least a tenth of the image's side."""
    h, w = image.shape[:2]
    rng = np.random.default_rng(1)
    x0, y0 = rng.uniform(0, 0.8, count) * w, rng.uniform(0, 0.8, count) * h
    x1 = x0 + rng.uniform(0.1, 1, count) * (w - x0)
    y1 = y0 + rng.uniform(0.1, 1, count) * (h - y0)
    return np.stack([x0, y0, x1, y1], axis=1)


def peak_tensor_bytes(fn: Callable) -> int:
    """The peak of the CPU tensor memory fn allocates beyond what is live when it starts
    (torch.profiler's memory events, summed in time order)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                    key=lambda e: e.start_ns())
    live = peak = 0
    for e in events:
        live += e.nbytes()
        peak = max(peak, live)
    return peak


def prompt_memory(predictor: Predictor, box: np.ndarray) -> float:
    """The bytes a prompt adds to a pass of the decoders on the CPU: the peak of a pass of 4
    prompts less that of 1, over 3 (frame.prompt_bytes estimates it)."""
    peaks = [peak_tensor_bytes(lambda B=B: predictor.predict(box=np.tile(box, (B, 1)),
                                                             batch_size=B)) for B in (1, 4)]
    return (peaks[1] - peaks[0]) / 3


def bench_many(variant: str, image_size: int, device: torch.device, reps: int,
               counts: list[int], with_onnx: bool) -> None:
    """Per object: B boxes in one predict call against B calls of one box each, for
    predictor.Predictor and (with_onnx) OnnxPredictor on the same random weights, all four back
    to back in each repetition."""
    _, sama = models(variant, image_size, device)
    image, _ = test_image(image_size)
    boxes = boxes_on(image, max(counts))
    predictors = {"PyTorch": Predictor(sama, TASKS)}
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp:
        if with_onnx:
            from deploy.onnx_graphs import export_graphs
            from deploy.sama_onnx import OnnxPredictor
            from load_sam_weights import DEFAULT_THRESHOLD

            _, sama_cpu = models(variant, image_size, torch.device("cpu"))  # the same weights
            export_graphs(sama_cpu, TASKS, DEFAULT_THRESHOLD, Path(tmp) / "onnx", weights={})
            del sama_cpu
            providers = ["CUDAExecutionProvider"] if device.type == "cuda" else []
            predictors["ONNX"] = OnnxPredictor(Path(tmp) / "onnx", threads=threads,
                                               providers=providers + ["CPUExecutionProvider"])
        with torch.inference_mode():
            for p in predictors.values():
                p.set_image(image)
            passes = ", ".join(f"{name} {p.batch_size}" for name, p in predictors.items())
            if device.type == "cpu":
                cfg = sama.sam.config
                G2C = cfg.grid_size**2 * cfg.prompt_embed_dim
                measured = prompt_memory(predictors["PyTorch"], boxes[0])
                estimate = prompt_bytes(cfg.grid_size, cfg.prompt_embed_dim, image_size,
                                        len(TASKS))
                print(f"\n{variant} at {image_size} px: a prompt adds {measured / 2**20:,.1f} MiB "
                      f"to a pass ({measured / 4 / G2C:.1f} G^2 C float32 values; profiler peak, "
                      f"4 prompts less 1, over 3), estimated {estimate / 2**20:,.1f} MiB "
                      f"({estimate / 4 / G2C:.1f})")
            print(f"\nSAMA {label(variant, image_size, device, torch.float32, reps)}, {threads} "
                  f"thread(s): per object, B boxes in one call against B calls (prompts in one "
                  f"pass at most: {passes})")
            for B in counts:
                runs = {}
                for name, p in predictors.items():
                    runs[f"{name} batch"] = lambda p=p, B=B: p.predict(box=boxes[:B])
                    runs[f"{name} single"] = lambda p=p, B=B: [p.predict(box=b)
                                                                for b in boxes[:B]]
                med = {k: v / B for k, v in medians(runs, device, reps).items()}
                cells = "   ".join(
                    f"{name} {med[f'{name} batch'] * 1e3:8.1f} ms vs "
                    f"{med[f'{name} single'] * 1e3:8.1f} ms = "
                    f"{med[f'{name} batch'] / med[f'{name} single']:.2f}x" for name in predictors)
                onnx = (f"   ONNX / PyTorch, batched: "
                        f"{med['ONNX batch'] / med['PyTorch batch']:.2f}x" if with_onnx else "")
                print(f"  B = {B:3}: {cells}{onnx}")


# ----------------------------------------------------------------------------------------------
# The optimisations the code keeps, each against its textbook form
# ----------------------------------------------------------------------------------------------


def set_attention_form(model: nn.Module, form: Optional[str]) -> None:
    for m in model.modules():
        if isinstance(m, Attention):
            m.form = form


def sama_image_in_fresh_process(variant: str, image_size: int, keep_freed: bool) -> float:
    """Seconds for one SAMA image (five views, MVLE, a prompt) after a warm-up one, in a process
    that has (or has not) called keep_freed_cpu_memory first."""
    if keep_freed:
        keep_freed_cpu_memory()
    _, sama = models(variant, image_size, torch.device("cpu"))
    predictor = Predictor(sama, TASKS)
    image, box = test_image(image_size)

    def one_image():
        predictor.set_image(image)
        predictor.predict(box=box)

    with torch.inference_mode():
        one_image()
        return timed(one_image, torch.device("cpu"))


def prompt_split(predictor: Predictor, box: np.ndarray, device: torch.device,
                 reps: int) -> dict[str, float]:
    """Median seconds of one prompt (Predictor.predict) and of its parts: SAM's pass, SAMA's two
    task passes, within them SAM's up-scaling of F'_out and the heads (timed by module hooks),
    the resize of the three maps to the image (sam.postprocess_masks)."""
    sama, sp = predictor.model, predictor.predictor
    prompts = prompt_tensors(None, None, box, predictor.size, sama.sam.config.image_size, device)
    inside = {"upscaling": 0.0, "heads": 0.0}
    hooks = []
    for name, modules in (("upscaling", [sama.sam.mask_decoder.output_upscaling]),
                          ("heads", list(sama.heads))):
        for m in modules:
            def start(*_):
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                inside["t0"] = time.perf_counter()

            def stop(*_, name=name):
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                inside[name] += time.perf_counter() - inside["t0"]

            hooks += [m.register_forward_pre_hook(start), m.register_forward_hook(stop)]
    S = sama.sam.config.image_size
    maps = torch.zeros(1, 3, 8 * sama.sam.config.grid_size, 8 * sama.sam.config.grid_size,
                       device=device)

    def sama_passes():  # as SamaPredictor._decode runs them
        sparse, dense = sama.sam.prompt_encoder(None, prompts[2], None)
        sama.decode_tasks(sp.features, TASKS, sparse, dense)

    runs = {
        "prompt": lambda: predictor.predict(box=box),
        "sam_pass": lambda: sama.sam.decode(sp.features.F_I, *prompts),
        "resize": lambda: (postprocess_masks(maps[:, :2], S, sp.input_size, sp.original_size),
                           postprocess_masks(maps[:, 2:, ::2, ::2], S, sp.input_size,
                                             sp.original_size)),
    }
    med = medians(runs, device, reps)
    inside.update(upscaling=0.0, heads=0.0)
    passes = []
    for _ in range(reps):
        before = dict(inside)
        passes.append((timed(sama_passes, device), inside["upscaling"] - before["upscaling"],
                       inside["heads"] - before["heads"]))
    for h in hooks:
        h.remove()
    total, upscaling, heads = (statistics.median(x) for x in zip(*passes))
    return {**med, "sama_passes": total, "upscaling": upscaling, "heads": heads,
            "transformer": total - upscaling - heads}


def bench_optimisations(variant: str, image_size: int, device: torch.device, reps: int,
                        dtype: torch.dtype) -> None:
    sam, sama = models(variant, image_size, device)
    sam_p, sama_p = SamPredictor(sam), SamaPredictor(sama)
    image, box = test_image(image_size)
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)
    print(f"\n{label(variant, image_size, device, dtype, reps)}: kept form / textbook form")

    # 1. Attention's forms, per image (SAM: one view; SAMA: five views and the rest)
    runs = {"SAM": lambda: sam_p.set_image(image), "SAMA": lambda: sama_p.set_image(image)}
    times = {(name, form): [] for name in runs for form in Attention.FORMS}
    with torch.inference_mode(), autocast:
        for _ in range(reps):
            for form in Attention.FORMS:
                set_attention_form(sama, form)
                for name, fn in runs.items():
                    times[name, form].append(timed(fn, device))
    set_attention_form(sama, None)
    default = Attention.DEVICE_FORM.get(device.type, "blockwise")
    for name in runs:
        med = {form: statistics.median(times[name, form]) for form in Attention.FORMS}
        cells = ", ".join(f"{form}{' (default)' if form == default else ''} {t * 1e3:.1f} ms "
                          f"= {t / med['textbook']:.2f}x" for form, t in med.items())
        print(f"  Attention forms, {name} per image: {cells}")

    # 2. keep_freed_cpu_memory (a process-wide setting): fresh processes, alternating
    if device.type == "cpu":
        spawn = multiprocessing.get_context("spawn")
        times = {True: [], False: []}
        for _ in range(reps):
            for keep in (True, False):
                with spawn.Pool(1) as pool:
                    times[keep].append(pool.apply(sama_image_in_fresh_process,
                                                  (variant, image_size, keep)))
        kept, default = statistics.median(times[True]), statistics.median(times[False])
        print(f"  keep_freed_cpu_memory, SAMA per image: {kept * 1e3:9.1f} ms vs "
              f"{default * 1e3:9.1f} ms = {kept / default:.2f}x")

    # 3. SamaPredictor's CUDA graphs, per prompt (the textbook form: _decode, eager)
    if device.type == "cuda":
        with torch.inference_mode(), autocast:
            sama_p.set_image(image)
            prompts = (None, None, torch.tensor([box], dtype=torch.float32, device=device))
            times = {"graph": [], "eager": []}
            sama_p._decode_graphed(prompts)  # capture
            for _ in range(reps):
                times["graph"].append(timed(lambda: sama_p._decode_graphed(prompts), device))
                times["eager"].append(timed(lambda: sama_p._decode(prompts), device))
        kept, textbook = statistics.median(times["graph"]), statistics.median(times["eager"])
        print(f"  CUDA graphs, SAMA's three decoder passes per prompt: {kept * 1e3:.2f} ms vs "
              f"{textbook * 1e3:.2f} ms = {kept / textbook:.2f}x")


# ----------------------------------------------------------------------------------------------
# Where the time goes: python -m benchmarks.benchmark --profile [--onnx]
# ----------------------------------------------------------------------------------------------


def torch_operators(fn: Callable, reps: int, by_shape: bool) -> collections.Counter:
    """Seconds per call of fn in each PyTorch operator (its self time, torch.profiler on the CPU)
    over `reps` calls after one warm-up, keyed by the operator's name, and with by_shape by its
    inputs' shapes too ("aten::addmm [128] [4096, 256] [256, 128]": bias, input, weight)."""
    fn()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                record_shapes=by_shape) as prof:
        for _ in range(reps):
            fn()
    times = collections.Counter()
    for event in prof.key_averages(group_by_input_shape=by_shape):
        shapes = " ".join(str(shape) for shape in event.input_shapes if shape) if by_shape else ""
        times[f"{event.key} {shapes}".strip()] += event.self_cpu_time_total / 1e6
    return collections.Counter({name: t / reps for name, t in times.items()})


def onnx_operators(session, run: Callable, reps: int) -> collections.Counter:
    """Seconds per call of `run` in each operator kind of an onnxruntime session made with
    profiling on (onnxruntime_sessions' profile_prefix): the kernel times of its profile, over
    `reps` calls after one warm-up. Ends the session's profiling."""
    for _ in range(reps + 1):
        run()
    events = json.loads(Path(session.end_profiling()).read_text())
    runs = sorted((e["ts"], e["ts"] + e["dur"]) for e in events
                  if e.get("cat") == "Session" and e["name"] == "model_run")[1:]  # less warm-up
    times = collections.Counter()
    for e in events:
        if (e.get("cat") == "Node" and e["name"].endswith("_kernel_time")
                and any(start <= e["ts"] <= end for start, end in runs)):
            times[e["args"]["op_name"]] += e["dur"] / 1e6 / len(runs)
    return times


def print_operators(title: str, wall: float, times: collections.Counter, rows: int) -> None:
    """The `rows` slowest operators of a profile, with their share of its operators' total."""
    total = sum(times.values())
    print(f"  {title}: {wall * 1e3:,.1f} ms without the profiler; the operators' self times "
          f"under it {total * 1e3:,.1f} ms, the slowest:")
    for name, t in times.most_common(rows):
        print(f"    {t * 1e3:9.1f} ms {t / total:6.1%}  {name}")


def bench_profile(variant: str, image_size: int, reps: int, with_onnx: bool) -> None:
    """A prompt (the predictor's three decoder passes and the resize; operators with their inputs'
    shapes) and an image (set_image) of SAMA's Predictor, operator by operator; with_onnx:
    the image through OnnxPredictor, its graph's operators by kind, on as many threads."""
    cpu = torch.device("cpu")
    _, sama = models(variant, image_size, cpu)
    predictor = Predictor(sama, TASKS)
    image, box = test_image(image_size)
    threads = torch.get_num_threads()
    print(f"\n{label(variant, image_size, cpu, torch.float32, reps)}, {threads} thread(s): "
          f"by operator")
    runs = {"prompt": lambda: predictor.predict(box=box),
            "image": lambda: predictor.set_image(image)}
    with torch.inference_mode():
        predictor.set_image(image)
        wall = medians(runs, cpu, reps)
        prompt = torch_operators(runs["prompt"], reps, by_shape=True)
        print_operators("SAMA per prompt", wall["prompt"], prompt, rows=20)
        print_operators("SAMA per image, set_image", wall["image"],
                        torch_operators(runs["image"], reps, by_shape=False), rows=8)
    if not with_onnx:
        return
    from deploy.onnx_graphs import export_graphs  # requirements-onnx.txt: --onnx only
    from deploy.sama_onnx import OnnxPredictor, onnxruntime_sessions
    from load_sam_weights import DEFAULT_THRESHOLD

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "onnx"
        export_graphs(sama, TASKS, DEFAULT_THRESHOLD, folder, weights={})
        onnx_p = OnnxPredictor(folder, threads=threads)
        onnx_wall = medians({"image": lambda: onnx_p.set_image(image)}, cpu, reps)["image"]
        onnx_p.sessions = onnxruntime_sessions(folder, onnx_p.manifest, None, threads,
                                               profile_prefix=str(Path(tmp) / "profile"))
        times = onnx_operators(onnx_p.sessions["image"], lambda: onnx_p.set_image(image), reps)
        print_operators("ONNX per image, set_image (onnxruntime's operator kinds)", onnx_wall,
                        times, rows=8)


# ----------------------------------------------------------------------------------------------
# Training steps: python -m benchmarks.benchmark --train --variants vit_l --device cuda
# ----------------------------------------------------------------------------------------------

DIS_SIZE = (2560, 1920)  # (long, short) side: DIS5K's images are about 2500 x 1800


def dis_sized_tree(root: Path) -> None:
    """The toy tree (synthetic.make_toy) with every image, mask and alpha resized to DIS5K's size,
    so that the loader processes decode and resize what a real run's do."""
    synthetic.make_toy(root, seed=0, n_train=16, n_val=0, n_test=0, n_fg=8, n_comp=0, n_aim500=0,
                       n_bg=4)
    for path in sorted(root.rglob("*")):
        if path.suffix in (".jpg", ".png"):
            with Image.open(path) as im:
                size = DIS_SIZE if im.width >= im.height else DIS_SIZE[::-1]
                resample = Image.BILINEAR if im.mode == "RGB" else Image.NEAREST
                resized = im.resize(size, resample)
            resized.save(path)


def bench_training(variant: str, device: torch.device, steps: int, batch_size: int, workers: int,
                   compile_encoder: bool) -> None:
    """train.py on DIS-sized JPEGs (a random SAM of the variant in the official format): seconds
    per step, median after the first five and the slowest of those (an epoch boundary that stalls
    shows there: each stream crosses one every 2-4 steps), and peak memory."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        dis_sized_tree(root)
        sam_path = root / f"sam_{variant}_random.pth"
        torch.manual_seed(0)
        torch.save(Sam(SAM_VARIANTS[variant]).state_dict(), sam_path)
        argv = ["--model", variant, "--sam-checkpoint", str(sam_path),
                "--data", str(root / "DIS5K"), "--matting", str(root / "AIM"),
                "--backgrounds", str(root / "backgrounds"), "--batch-size", str(batch_size),
                "--workers", str(workers), "--max-steps", str(steps), "--log-every", "1",
                "--val-every", "0", "--save-every", str(steps), "--out", str(root / "run")]
        # train.py in a process of its own: a command-line module runs another, never imports it
        command = [sys.executable, "train.py", *argv, *(["--compile"] if compile_encoder else [])]
        if subprocess.run(command, cwd=ROOT).returncode != 0:
            raise SystemExit("benchmark.py --train: train.py failed (its error is above)")
        log = [json.loads(line) for line in (root / "run" / "log.jsonl").read_text().splitlines()]
    times = [r["s_per_step"] for r in log[5:]] or [r["s_per_step"] for r in log]
    dtype = "bf16 autocast" if device.type == "cuda" else "float32"
    print(f"\ntrain.py, {variant}, batch {batch_size} per task, {workers} loader processes, "
          f"{device}, {dtype}{', --compile' if compile_encoder else ''}, DIS-sized JPEGs "
          f"({DIS_SIZE[0]} x {DIS_SIZE[1]})")
    print(f"  s per step: median {statistics.median(times):.3f}, slowest {max(times):.3f} "
          f"(steps 6-{len(log)}); step 1 {log[0]['s_per_step']:.2f} s; peak memory "
          f"{log[-1]['peak_mem_mb']:,.0f} MiB{' (GPU)' if device.type == 'cuda' else ' (RSS)'}")


# ----------------------------------------------------------------------------------------------
# Parameter overhead: python -m benchmarks.benchmark --params
# ----------------------------------------------------------------------------------------------


def count(module: Optional[nn.Module]) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def print_param_overhead() -> None:
    """SAM's parameters and what SAMA adds, per module, for the official variants (meta device:
    no memory)."""
    paper = 0.018  # "SAMA adds 1.8% to SAM"
    names = ("MVLE", "early_proj", "early_up", "adapters", "tokens", "heads")
    widths = (10, 10, 8, 10, 7, 9)
    print(f"{'variant':8} {'SAM':>13} " + " ".join(f"{n:>{w}}" for n, w in zip(names, widths))
          + f" {'SAMA adds':>11} {'ratio':>7}")
    for name in ("vit_b", "vit_l", "vit_h"):
        with torch.device("meta"):
            model = SAMA(Sam(SAM_VARIANTS[name]))
        parts = [model.mvle, model.early_proj, model.early_up, model.local_adapters,
                 model.sama_tokens, model.heads]
        added, sam = sum(count(p) for p in parts), count(model.sam)
        print(f"{name:8} {sam:13,} " + " ".join(f"{count(p):{w},}" for p, w in zip(parts, widths))
              + f" {added:11,} {added / sam:7.2%}")
    print(f"paper: SAMA adds {paper:.1%} to SAM (variant not named)")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", nargs="+", default=["tiny", "vit_b"], choices=list(SAM_VARIANTS))
    p.add_argument("--image-size", type=int, help="frame side of the non-tiny variants "
                                                  "(default: 1024 on CUDA, 512 on the CPU)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA)")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--params", action="store_true", help="print the parameter overhead, then stop")
    p.add_argument("--meta", action="store_true",
                   help="also time Meta's SAM (segment-anything, requirements-dev) on the same "
                        "weights")
    p.add_argument("--optimisations", action="store_true",
                   help="time each optimisation the code keeps against its textbook form")
    p.add_argument("--train", action="store_true",
                   help="time train.py's steps on DIS-sized JPEGs (the variants' random SAMs)")
    p.add_argument("--steps", type=int, help="--train: steps to run (default 30)")
    p.add_argument("--batch-size", type=int,
                   help="--train: images per task per step (default 4)")
    p.add_argument("--workers", type=int,
                   help="--train: loader processes (default: the CPU cores less 2, 1 to 14)")
    p.add_argument("--compile", action="store_true", help="--train: with train.py --compile")
    p.add_argument("--onnx", action="store_true",
                   help="SAMA's PyTorch predictor against its ONNX export (requirements-onnx.txt)")
    p.add_argument("--many", action="store_true",
                   help="per object: B boxes in one call against B calls, PyTorch and ONNX")
    p.add_argument("--objects", type=int, nargs="+", metavar="B",
                   help="--many: the numbers of boxes B (default 1 8 32)")
    p.add_argument("--no-onnx", action="store_true", help="--many: PyTorch only")
    p.add_argument("--profile", action="store_true",
                   help="a prompt and an image by operator on the CPU (--onnx: the ONNX image "
                        "graph's beside)")
    args = p.parse_args(argv)
    # one kind of run; an option of another kind would be ignored
    modes = [o for o in ("params", "train", "optimisations", "onnx", "many", "profile")
             if getattr(args, o)]
    if modes[-2:] == ["onnx", "profile"]:  # --onnx beside --profile: the ONNX graph's profile
        modes.remove("onnx")
    if len(modes) > 1:
        p.error(f"--{modes[0]} and --{modes[1]}: one kind of benchmark per run")
    only_train = [o for o in ("steps", "batch_size", "workers", "compile")
                  if getattr(args, o) not in (None, False)]
    if only_train and modes != ["train"]:
        p.error(f"--{only_train[0].replace('_', '-')} applies to --train only")
    only_many = [o for o in ("objects", "no_onnx") if getattr(args, o) not in (None, False)]
    if only_many and modes != ["many"]:
        p.error(f"--{only_many[0].replace('_', '-')} applies to --many only")
    args.objects = args.objects or [1, 8, 32]
    if min(args.objects) < 1:
        p.error(f"--objects must be at least 1, got {min(args.objects)}")
    if args.meta and modes:
        p.error(f"--meta times Meta's SAM beside ours in the side-by-side run, not with "
                f"--{modes[0]}")
    timed_here = [o for o in ("bf16", "image_size") if getattr(args, o) not in (None, False)]
    if timed_here and modes and modes[0] in ("params", "train"):
        p.error(f"--{timed_here[0].replace('_', '-')} does not apply to --{modes[0]}")
    args.steps = 30 if args.steps is None else args.steps
    args.batch_size = 4 if args.batch_size is None else args.batch_size
    if args.workers is None:
        args.workers = min(14, max(1, (os.cpu_count() or 2) - 2))
    print(f"benchmark.py at {provenance()}; {os.cpu_count()} CPU cores")
    if args.params:
        print_param_overhead()
        return
    for option, value in (("--reps", args.reps), ("--steps", args.steps),
                          ("--batch-size", args.batch_size), ("--workers", args.workers)):
        if value < 1:
            p.error(f"{option} must be at least 1, got {value}")
    if args.meta and importlib.util.find_spec("segment_anything") is None:
        p.error("--meta needs Meta's package: pip install -r requirements-dev.txt")
    if args.profile and (args.bf16 or torch.device(args.device).type != "cpu"):
        p.error("--profile reads float32 operators on the CPU: give --device cpu, leave out "
                "--bf16")
    if args.onnx and args.bf16:
        p.error("--onnx compares float32 graphs: leave out --bf16")
    onnx_packages = ("onnxruntime", "onnxscript")
    if args.many and args.bf16:
        p.error("--many compares float32 predictors: leave out --bf16")
    if ((args.onnx or (args.many and not args.no_onnx))
            and any(importlib.util.find_spec(m) is None for m in onnx_packages)):
        mode = "onnx" if args.onnx else "many"
        p.error(f"--{mode} needs the ONNX packages: pip install -r requirements-onnx.txt"
                + (" (or --no-onnx)" if args.many else ""))
    device = torch.device(args.device)
    if args.train:
        if device.type != ("cuda" if torch.cuda.is_available() else "cpu"):
            p.error(f"--train runs train.py, which picks its device itself: --device {device} "
                    f"is not it")
        for variant in args.variants:
            bench_training(variant, device, args.steps, args.batch_size, args.workers,
                           args.compile)
        return
    keep_freed_cpu_memory()  # as evaluate.py and predict.py do; SAM and SAMA alike
    for variant in args.variants:
        size = SAM_VARIANTS[variant].image_size if variant == "tiny" else (
            args.image_size or (1024 if device.type == "cuda" else 512))
        dtype = torch.bfloat16 if args.bf16 else torch.float32
        if args.optimisations:
            bench_optimisations(variant, size, device, args.reps, dtype)
        elif args.profile:
            bench_profile(variant, size, args.reps, args.onnx)
        elif args.onnx:
            bench_onnx(variant, size, device, args.reps)
        elif args.many:
            bench_many(variant, size, device, args.reps, args.objects, not args.no_onnx)
        else:
            bench(variant, size, device, args.reps, dtype, args.meta)


if __name__ == "__main__":
    main()
