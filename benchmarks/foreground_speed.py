"""foreground.estimate_foreground's time against pymatting's estimate_foreground_ml (its test
oracle, requirements-dev.txt) on the same inputs, side by side, and the fast sweep (one
anti-diagonal at a time) against the textbook one (one pixel at a time).

    python -m benchmarks.foreground_speed [--size 1024] [--textbook-size 64] [--device cuda]

The inputs: random colours under a disc-shaped alpha with a noisy rim (sure foreground, sure
background and partial pixels). Each is timed --reps times, back to back, the fastest kept;
pymatting once untimed first (numba compiles). One thread on the CPU (torch's and numba's), timed
in the process's CPU time (on a shared machine less disturbed than the wall clock; on --device
cuda the wall clock); the ratio is what to read. Also printed: the largest difference from
pymatting's numbers.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from foreground import estimate_foreground


def case(size: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    image = rng.random((size, size, 3), dtype=np.float32)
    y, x = np.mgrid[:size, :size]
    disc = np.hypot(y - size / 2, x - size / 2) < size / 3
    alpha = np.clip(disc + 0.3 * rng.random((size, size)), 0, 1).astype(np.float32)
    return image, alpha


def fastest(fn, reps: int, clock=time.process_time) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(reps):
        start = clock()
        out = fn()
        best = min(best, clock() - start)
    return best, out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=1024, help="the image's side against pymatting")
    p.add_argument("--textbook-size", type=int, default=64,
                   help="the image's side for the textbook sweep (a Python loop per pixel)")
    p.add_argument("--device", default="cpu", help="where ours runs (pymatting: the CPU)")
    p.add_argument("--reps", type=int, default=3)
    args = p.parse_args(argv)
    if min(args.size, args.textbook_size, args.reps) < 1:
        p.error("--size, --textbook-size and --reps: at least 1")
    import numba
    from pymatting import estimate_foreground_ml

    torch.set_num_threads(1)
    numba.set_num_threads(1)
    device = torch.device(args.device)

    def ours(image, alpha, wavefront=True):
        def run():
            F, _ = estimate_foreground(torch.from_numpy(image).to(device),
                                       torch.from_numpy(alpha).to(device), wavefront=wavefront)
            if device.type == "cuda":
                torch.cuda.synchronize()
            return F.cpu().numpy()
        return run

    image, alpha = case(args.size)
    estimate_foreground_ml(image[:16, :16], alpha[:16, :16])  # numba compiles
    ours(image[:16, :16], alpha[:16, :16])()  # the device warms up
    t_theirs, theirs = fastest(lambda: estimate_foreground_ml(image, alpha), args.reps)
    clock = time.perf_counter if device.type == "cuda" else time.process_time
    t_ours, mine = fastest(ours(image, alpha), args.reps, clock)
    print(f"{args.size} x {args.size}, fastest of {args.reps}, one CPU thread, seconds:")
    print(f"  pymatting (numba, CPU)         {t_theirs:8.3f} s")
    print(f"  foreground.py ({device.type}, wavefront) {t_ours:8.3f} s   "
          f"{t_ours / t_theirs:.2f}x pymatting's time")
    print(f"  largest |difference| of F: {np.abs(mine - theirs).max():.3g}")

    image, alpha = case(args.textbook_size)
    t_fast, fast = fastest(ours(image, alpha), args.reps, clock)
    t_textbook, textbook = fastest(ours(image, alpha, wavefront=False), args.reps, clock)
    print(f"{args.textbook_size} x {args.textbook_size}: textbook (a pixel at a time) "
          f"{t_textbook:.3f} s, wavefront {t_fast:.3f} s: {t_textbook / t_fast:.1f}x faster; "
          f"equal: {np.array_equal(fast, textbook)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
