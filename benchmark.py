"""SAM vs SAMA, side by side in one run: time per image, time per prompt, peak memory; the
parameter overhead; and each optimisation the code keeps against its textbook form.

    python benchmark.py                      # tiny at 256 px and ViT-B at 512 px (CPU-friendly)
    python benchmark.py --variants vit_b --image-size 1024 --device cuda [--bf16]
    python benchmark.py --params             # SAM's parameters and what SAMA adds, per module
    python benchmark.py --optimisations --variants vit_b --image-size 1024

Per image = set_image (encoder; SAMA: five views and MVLE) + one box prompt.
Per prompt = one more box prompt on the cached image features (SAMA: its two task passes and the
plain-SAM pass it reports beside them, replayed from a CUDA graph on CUDA). Each repetition times
SAM and SAMA back to back and the medians are compared, so a noisy machine affects both alike.
Random weights: speed does not depend on their values. A reduced --image-size keeps every layer
but shrinks the token grid (labelled). BENCHMARKS.md holds the numbers.
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import resource
import statistics
import time
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn as nn

from predict import keep_freed_cpu_memory
from sam import SAM_VARIANTS, Attention, Sam, SamPredictor
from sama import SAMA, SamaPredictor


def timed(fn: Callable, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t


def peak_memory(fn: Callable, device: torch.device) -> str:
    """Peak GPU memory of fn on CUDA; on the CPU the process's peak RSS so far (an upper bound)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        return f"{torch.cuda.max_memory_allocated(device) / 2**20:,.0f} MiB (GPU)"
    fn()
    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB (process RSS)"


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


def bench(
    variant: str, image_size: int, device: torch.device, reps: int, dtype: torch.dtype
) -> None:
    sam, sama = models(variant, image_size, device)
    sam_p, sama_p = SamPredictor(sam), SamaPredictor(sama)
    image, box = test_image(image_size)
    frames = torch.randn(5, 3, image_size, image_size, device=device)
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)

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
    }
    with torch.inference_mode(), autocast:
        sam_image(), sama_image()  # warm-up (allocator, kernels)
        times = {name: [] for name in runs}
        for _ in range(reps):
            for name, fn in runs.items():
                times[name].append(timed(fn, device))
        med = {k: statistics.median(v) for k, v in times.items()}
        mem_sam = peak_memory(sam_image, device)
        mem_sama = peak_memory(sama_image, device)

    ms = {k: f"{v * 1e3:9.1f} ms" for k, v in med.items()}
    print(f"\n{label(variant, image_size, device, dtype, reps)}")
    print(f"  per image : SAM {ms['sam_image']}   SAMA {ms['sama_image']}   "
          f"ratio {med['sama_image'] / med['sam_image']:.2f}x (target <= 5.2x)")
    print(f"    the encoder alone: one view {ms['encoder_1']}, five views {ms['encoder_5']} "
          f"({med['encoder_5'] / med['encoder_1']:.2f}x)")
    print(f"  per prompt: SAM {ms['sam_prompt']}   SAMA {ms['sama_prompt']}   "
          f"ratio {med['sama_prompt'] / med['sam_prompt']:.2f}x SAM's prompt")
    print(f"  SAMA per prompt / SAM per image: {med['sama_prompt'] / med['sam_image']:.1%}")
    print(f"  peak memory: SAM {mem_sam}, SAMA {mem_sama}")


# ----------------------------------------------------------------------------------------------
# The optimisations the code keeps, each against its textbook form
# ----------------------------------------------------------------------------------------------


def set_blockwise(model: nn.Module, on: bool) -> None:
    for m in model.modules():
        if isinstance(m, Attention):
            m.blockwise = on


def sama_image_in_fresh_process(variant: str, image_size: int, keep_freed: bool) -> float:
    """Seconds for one SAMA image (five views, MVLE, a prompt) after a warm-up one, in a process
    that has (or has not) called keep_freed_cpu_memory first."""
    if keep_freed:
        keep_freed_cpu_memory()
    _, sama = models(variant, image_size, torch.device("cpu"))
    predictor = SamaPredictor(sama)
    image, box = test_image(image_size)

    def one_image():
        predictor.set_image(image)
        predictor.predict(box=box)

    with torch.inference_mode():
        one_image()
        return timed(one_image, torch.device("cpu"))


def bench_optimisations(variant: str, image_size: int, device: torch.device, reps: int,
                        dtype: torch.dtype) -> None:
    sam, sama = models(variant, image_size, device)
    sam_p, sama_p = SamPredictor(sam), SamaPredictor(sama)
    image, box = test_image(image_size)
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)
    print(f"\n{label(variant, image_size, device, dtype, reps)}: kept form / textbook form")

    # 1. Attention.blockwise, per image (SAM: one view; SAMA: five views and the rest)
    runs = {"SAM": lambda: sam_p.set_image(image), "SAMA": lambda: sama_p.set_image(image)}
    times = {(name, on): [] for name in runs for on in (True, False)}
    with torch.inference_mode(), autocast:
        for _ in range(reps):
            for on in (True, False):
                set_blockwise(sama, on)
                for name, fn in runs.items():
                    times[name, on].append(timed(fn, device))
    set_blockwise(sama, True)
    for name in runs:
        kept, textbook = (statistics.median(times[name, on]) for on in (True, False))
        print(f"  Attention.blockwise, {name} per image: {kept * 1e3:9.1f} ms vs "
              f"{textbook * 1e3:9.1f} ms = {kept / textbook:.2f}x")

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
# Parameter overhead: python benchmark.py --params
# ----------------------------------------------------------------------------------------------


def count(module: Optional[nn.Module]) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def print_param_overhead() -> None:
    """SAM's parameters and what SAMA adds, per module, for the official variants (meta device:
    no memory)."""
    paper = 0.018  # "SAMA adds 1.8% to SAM"
    names = ("MVLE", "early_proj", "adapters", "tokens", "heads")
    widths = (10, 10, 10, 7, 9)
    print(f"{'variant':8} {'SAM':>13} " + " ".join(f"{n:>{w}}" for n, w in zip(names, widths))
          + f" {'SAMA adds':>11} {'ratio':>7}")
    for name in ("vit_b", "vit_l", "vit_h"):
        with torch.device("meta"):
            model = SAMA(Sam(SAM_VARIANTS[name]))
        parts = [model.mvle, model.early_proj, model.local_adapters, model.sama_tokens, model.heads]
        added, sam = sum(count(p) for p in parts), count(model.sam)
        print(f"{name:8} {sam:13,} " + " ".join(f"{count(p):{w},}" for p, w in zip(parts, widths))
              + f" {added:11,} {added / sam:7.2%}")
    print(f"paper: SAMA adds {paper:.1%} to SAM (variant not named)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", nargs="+", default=["tiny", "vit_b"], choices=list(SAM_VARIANTS))
    p.add_argument("--image-size", type=int, help="frame side of the non-tiny variants "
                                                  "(default: 1024 on CUDA, 512 on the CPU)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA)")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--params", action="store_true", help="print the parameter overhead, then stop")
    p.add_argument("--optimisations", action="store_true",
                   help="time each optimisation the code keeps against its textbook form")
    args = p.parse_args()
    if args.params:
        print_param_overhead()
        return
    if args.reps < 1:
        p.error(f"--reps must be at least 1, got {args.reps}")
    device = torch.device(args.device)
    keep_freed_cpu_memory()  # as evaluate.py and predict.py do; SAM and SAMA alike
    for variant in args.variants:
        size = SAM_VARIANTS[variant].image_size if variant == "tiny" else (
            args.image_size or (1024 if device.type == "cuda" else 512))
        dtype = torch.bfloat16 if args.bf16 else torch.float32
        run = bench_optimisations if args.optimisations else bench
        run(variant, size, device, args.reps, dtype)


if __name__ == "__main__":
    main()
