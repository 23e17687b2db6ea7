"""SAM vs SAMA, side by side in one run: time per image, time per prompt, peak memory.

    python benchmark.py                      # tiny at 256 px and ViT-B at 512 px (CPU-friendly)
    python benchmark.py --variants vit_b --image-size 1024 --device cuda
    python benchmark.py --params             # SAM's parameters and what SAMA adds, per module

Per image = set_image (encoder; SAMA: five views and MVLE) + one box prompt.
Per prompt = one more box prompt on the cached image features (SAMA: its two task passes and the
plain-SAM pass it reports beside them, replayed from a CUDA graph on CUDA). Each repetition times
SAM and SAMA back to back and the medians are compared, so a noisy machine affects both alike.
Random weights: speed does not depend on their values. A reduced --image-size keeps every layer but
shrinks the token grid (labelled).
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Optional
import resource
import statistics
import time

import numpy as np
import torch
import torch.nn as nn

from predict import keep_freed_cpu_memory
from sam import SAM_VARIANTS, Sam, SamPredictor
from sama import SAMA, SamaPredictor


def timed(fn, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t


def peak_memory(fn, device: torch.device) -> str:
    """Peak GPU memory of fn on CUDA; on the CPU the process's peak RSS so far (an upper bound)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        return f"{torch.cuda.max_memory_allocated(device) / 2**20:,.0f} MiB (GPU)"
    fn()
    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB (process RSS)"


def bench(variant: str, image_size: int, device: torch.device, reps: int, dtype: torch.dtype) -> None:
    cfg = dataclasses.replace(SAM_VARIANTS[variant], image_size=image_size)
    sam = Sam(cfg).to(device).eval()
    sama = SAMA(sam).to(device).eval()
    sam_p, sama_p = SamPredictor(sam), SamaPredictor(sama)
    rng = np.random.default_rng(0)
    h, w = int(image_size * 0.75), image_size
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    box = np.array([w * 0.2, h * 0.2, w * 0.8, h * 0.7])
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)

    def sam_image():
        sam_p.set_image(image)
        sam_p.predict(box=box, multimask_output=False)

    def sama_image():
        sama_p.set_image(image)
        sama_p.predict(box=box)

    S = image_size
    frames = torch.randn(5, 3, S, S, device=device)

    def encoder_one_view():
        sam.image_encoder(frames[:1])

    def encoder_five_views():  # SAMA's floor: its encoder batch (global view + 4 local views)
        sam.image_encoder(frames)

    def sam_prompt():
        sam_p.predict(box=box, multimask_output=False)

    def sama_prompt():
        sama_p.predict(box=box)

    with torch.inference_mode(), autocast:
        for fn in (sam_image, sama_image):  # warm-up (allocator, kernels)
            fn()
        times = {name: [] for name in ("sam_image", "sama_image", "sam_prompt", "sama_prompt", "encoder_1", "encoder_5")}
        for _ in range(reps):
            times["sam_image"].append(timed(sam_image, device))
            times["sama_image"].append(timed(sama_image, device))
            times["sam_prompt"].append(timed(sam_prompt, device))
            times["sama_prompt"].append(timed(sama_prompt, device))
            times["encoder_1"].append(timed(encoder_one_view, device))
            times["encoder_5"].append(timed(encoder_five_views, device))
        med = {k: statistics.median(v) for k, v in times.items()}
        mem_sam = peak_memory(sam_image, device)
        mem_sama = peak_memory(sama_image, device)

    label = f"{variant} at {image_size} px" + ("" if image_size == SAM_VARIANTS[variant].image_size else " (reduced)")
    print(f"\n{label}, {device}, {str(dtype).replace('torch.', '')}, median of {reps}")
    print(f"  per image : SAM {med['sam_image'] * 1e3:9.1f} ms   SAMA {med['sama_image'] * 1e3:9.1f} ms   "
          f"ratio {med['sama_image'] / med['sam_image']:.2f}x (target <= 5.2x)")
    print(f"    beyond five SAM images: {med['sama_image'] / med['sam_image'] / 5 - 1:+.1%} (target < +4%); the encoder "
          f"alone: one view {med['encoder_1'] * 1e3:.1f} ms, five views {med['encoder_5'] * 1e3:.1f} ms "
          f"({med['encoder_5'] / med['encoder_1']:.2f}x)")
    print(f"  per prompt: SAM {med['sam_prompt'] * 1e3:9.1f} ms   SAMA {med['sama_prompt'] * 1e3:9.1f} ms   "
          f"ratio {med['sama_prompt'] / med['sam_prompt']:.2f}x SAM's prompt")
    print(f"  SAMA per prompt / SAM per image: {med['sama_prompt'] / med['sam_image']:.1%} (target < 5%)")
    print(f"  peak memory: SAM {mem_sam}, SAMA {mem_sama}")


# ----------------------------------------------------------------------------------------------
# Parameter overhead: python benchmark.py --params
# ----------------------------------------------------------------------------------------------


def count(module: Optional[nn.Module]) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def print_param_overhead() -> None:
    """SAM's parameters and what SAMA adds, per module, for the official variants (meta device: no memory)."""
    paper = 0.018  # "SAMA adds 1.8% to SAM"
    print(f"{'variant':8} {'SAM':>13} {'MVLE':>10} {'early_proj':>10} {'adapters':>10} {'tokens':>7} "
          f"{'heads':>9} {'SAMA adds':>11} {'ratio':>7}")
    for name in ("vit_b", "vit_l", "vit_h"):
        with torch.device("meta"):
            model = SAMA(Sam(SAM_VARIANTS[name]))
        parts = [model.mvle, model.early_proj, model.local_adapters, model.sama_tokens, model.heads]
        added = sum(count(p) for p in parts)
        sam = count(model.sam)
        print(f"{name:8} {sam:13,} " + " ".join(f"{count(p):{w},}" for p, w in zip(parts, (10, 10, 10, 7, 9)))
              + f" {added:11,} {added / sam:7.2%}")
    print(f"paper: SAMA adds {paper:.1%} to SAM (variant not named)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", nargs="+", default=["tiny", "vit_b"], choices=list(SAM_VARIANTS))
    p.add_argument("--image-size", type=int, help="frame side for the non-tiny variants (default 512 on CPU)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA)")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--params", action="store_true", help="print SAM's parameters and SAMA's overhead, then stop")
    args = p.parse_args()
    if args.params:
        print_param_overhead()
        return
    device = torch.device(args.device)
    keep_freed_cpu_memory()  # as evaluate.py and predict.py do; SAM and SAMA alike
    torch.manual_seed(0)
    for variant in args.variants:
        size = SAM_VARIANTS[variant].image_size if variant == "tiny" else (
            args.image_size or (1024 if device.type == "cuda" else 512))
        bench(variant, size, device, args.reps, torch.bfloat16 if args.bf16 else torch.float32)


if __name__ == "__main__":
    main()
