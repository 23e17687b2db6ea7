"""Times metrics.py against PySODMetrics on realistic maps and checks that the results are equal.

    python -m benchmarks.benchmark_metrics

SegMetrics (which also computes mIoU and mBIoU) vs PySODMetrics' Fmeasure, WeightedFmeasure,
Smeasure, Emeasure and MAE stepped on the same uint8 maps, at 1024 x 1024 and 3000 x 2000; then
MattingMetrics' time per image at 2000 x 2000. PySODMetrics is a test / benchmark oracle only.
"""

import argparse
import time
import warnings

import numpy as np
from scipy import ndimage

from metrics import MattingMetrics, SegMetrics
from outputs import provenance

KEYS = ("maxF", "wF", "MAE", "Sm", "meanEm")


def blob_pair(h, w, rng):
    """A GT of a few overlapping ellipses with a hole, and a blurred, noisy, slightly shifted
    prediction."""
    yy, xx = np.ogrid[:h, :w]
    gt = np.zeros((h, w), bool)
    for _ in range(3):
        cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
        ry, rx = rng.uniform(0.1, 0.3) * h, rng.uniform(0.1, 0.3) * w
        gt |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
    gt &= ((yy - 0.5 * h) / (0.04 * h)) ** 2 + ((xx - 0.5 * w) / (0.04 * w)) ** 2 >= 1
    pred = ndimage.gaussian_filter(np.roll(gt, int(0.005 * w), axis=1) * 255.0, 0.004 * max(h, w))
    pred += rng.normal(0, 8, (h, w))
    return np.clip(pred, 0, 255).astype(np.uint8), gt.astype(np.uint8) * 255


def compare(pairs):
    """Steps PySODMetrics and SegMetrics image by image, alternating, so load changes hit both
    alike.

    Returns:
        (pysod seconds, ours seconds, pysod results, our results).
    """
    import py_sod_metrics

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Fmeasure's deprecation notice
        fm, wfm, sm, em, mae = (
            py_sod_metrics.Fmeasure(),
            py_sod_metrics.WeightedFmeasure(),
            py_sod_metrics.Smeasure(),
            py_sod_metrics.Emeasure(),
            py_sod_metrics.MAE(),
        )
        seg = SegMetrics()
        t_ref = t_ours = 0.0
        for pred, gt in pairs:
            start = time.perf_counter()
            for m in (fm, wfm, sm, em, mae):
                m.step(pred, gt)
            t_ref += time.perf_counter() - start
            start = time.perf_counter()
            seg.update(pred, gt)
            t_ours += time.perf_counter() - start
    ref = {
        "maxF": fm.get_results()["fm"]["curve"].max(), "wF": wfm.get_results()["wfm"],
        "MAE": mae.get_results()["mae"], "Sm": sm.get_results()["sm"],
        "meanEm": em.get_results()["em"]["curve"].mean(),
    }
    return t_ref, t_ours, ref, seg.results()


def main(argv=None):
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)  # --help only
    print(f"benchmark_metrics.py at {provenance()}")
    rng = np.random.default_rng(0)
    print(
        "Segmentation: SegMetrics (+ mIoU, mBIoU) vs PySODMetrics (Fmeasure, WeightedFmeasure, "
        "Smeasure, Emeasure, MAE)"
    )
    for (h, w), count in (((1024, 1024), 4), ((2000, 3000), 3)):
        pairs = [blob_pair(h, w, rng) for _ in range(count)]
        t_ref, t_ours, ref, ours = compare(pairs)
        worst = max(abs(ours[k] - ref[k]) / max(abs(ref[k]), 1e-300) for k in KEYS)
        print(f"  {w}x{h}, {count} images: PySODMetrics {t_ref / count:.3f} s/image, "
              f"SegMetrics {t_ours / count:.3f} s/image, throughput x{t_ref / t_ours:.2f}")
        print("    " + "  ".join(f"{k} {ref[k]:.6f} / {ours[k]:.6f}" for k in KEYS)
              + "  (PySODMetrics / ours)")
        print(
            f"    max relative difference {worst:.1e}: {'EQUAL' if worst <= 1e-6 else 'DIFFERENT'} "
            f"(tolerance 1e-6); mIoU {ours['mIoU']:.4f}, mBIoU {ours['mBIoU']:.4f}"
        )

    h = w = 2000
    count = 2
    pairs = []
    for _ in range(count):
        pred, gt = blob_pair(h, w, rng)
        gt_alpha = ndimage.gaussian_filter(gt.astype(np.float64), 3).astype(np.uint8)  # soft edges
        trimap = np.where(
            ndimage.binary_dilation(gt > 128, iterations=15)
            & ~ndimage.binary_erosion(gt > 128, iterations=15),
            128,
            np.where(gt > 128, 255, 0),
        ).astype(np.uint8)
        pairs.append((pred, gt_alpha, trimap))
    for use_trimap in (False, True):
        mat = MattingMetrics()
        start = time.perf_counter()
        for pred, gt_alpha, trimap in pairs:
            mat.update(pred, gt_alpha, trimap if use_trimap else None)
        seconds = (time.perf_counter() - start) / count
        r = mat.results()
        print(
            f"Matting: MattingMetrics {w}x{h}, {count} images, region {r['region']}: "
            f"{seconds:.3f} s/image (SAD {r['SAD']:.3f}, MSE {r['MSE']:.3f}, "
            f"Grad {r['Grad']:.3f}, Conn {r['Conn']:.3f})"
        )


if __name__ == "__main__":
    main()
