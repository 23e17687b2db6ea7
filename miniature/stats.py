"""Is a contrast between two configurations more than noise? A paired bootstrap over the test images
and the training seeds (DESIGN.md, "The ablation in miniature").

A configuration's score is the mean over its seeds of the dataset score of each seed's run (maxF:
the maximum over thresholds of the image-averaged F curve; every other score: the image average).
Both sources of chance are resampled in each of RESAMPLES replicates:
- the test images, with replacement, the same draw for both configurations (paired: an image hard
  for one is hard for the other);
- each configuration's seeds, with replacement, independently (different training runs).
The interval is the 2.5 and 97.5 percentiles of the replicates' differences; a claim is supported
only when the interval excludes zero in the paper's direction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Optional

import numpy as np

RESAMPLES = 2000
LEVEL = 0.95


def _score(per_image: np.ndarray, image_weights: np.ndarray, seed_weights: np.ndarray,
           reduce: Optional[Callable]) -> np.ndarray:
    """(seeds, images[, k]) scores -> (R,) configuration scores, one per row of the weights:
    image_weights (R, images) and seed_weights (R, seeds), each row summing to 1."""
    per_seed = []
    for scores in per_image:
        dataset = image_weights @ scores  # (R,) or (R, k): each run's image average
        per_seed.append(dataset if reduce is None else reduce(dataset))
    return np.sum(np.stack(per_seed, axis=1) * seed_weights, axis=1)


def paired_bootstrap(a, b, reduce: Optional[Callable] = None, resamples: int = RESAMPLES,
                     seed: int = 0) -> dict:
    """The difference A - B and its 95% interval.

    Args:
        a, b: (seeds, images) per-image scores of each configuration, or (seeds, images, k) with a
            `reduce` mapping (..., k) -> (...) (maxF: the F curves and their maximum); the images
            in the same order in both, the seeds any number (1 for an untrained model).
        reduce: applied to each run's image-averaged scores, or None.
        resamples, seed: the number of replicates and their random generator's seed.

    Returns:
        dict: "diff" (A - B on the data as they are), "low", "high" (the interval).
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim < 2 or a.shape[1:] != b.shape[1:] or 0 in a.shape or 0 in b.shape:
        raise ValueError(f"paired_bootstrap needs (seeds, images[, k]) scores of the same images, "
                         f"got shapes {a.shape} and {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("paired_bootstrap: the scores hold NaN or inf")
    n = a.shape[1]
    rng = np.random.default_rng(seed)
    # how often each image / seed is drawn in each replicate, as weights summing to 1
    images = rng.multinomial(n, np.full(n, 1 / n), size=resamples) / n
    seeds_a = rng.multinomial(len(a), np.full(len(a), 1 / len(a)), size=resamples) / len(a)
    seeds_b = rng.multinomial(len(b), np.full(len(b), 1 / len(b)), size=resamples) / len(b)
    differences = _score(a, images, seeds_a, reduce) - _score(b, images, seeds_b, reduce)
    observed = (_score(a, np.full((1, n), 1 / n), np.full((1, len(a)), 1 / len(a)), reduce)
                - _score(b, np.full((1, n), 1 / n), np.full((1, len(b)), 1 / len(b)), reduce))
    low, high = np.quantile(differences, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    return {"diff": float(observed[0]), "low": float(low), "high": float(high)}


def verdict(low: float, high: float, higher_is_better: bool) -> str:
    """"supported" when the interval of A - B excludes zero on the side where A is better (the
    paper's direction: each contrast is stated with the paper's better configuration first)."""
    supported = low > 0 if higher_is_better else high < 0
    return "supported" if supported else "not supported"
