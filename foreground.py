"""The cut-out's colours: Germer et al.'s fast multi-level foreground estimation, in torch (any
device).

Where a matte is partial (0 < alpha < 1) the image's pixel is a mix, I = alpha F + (1 - alpha) B
(readers.composite), so a cut-out that keeps I carries the old background B into hair and soft
edges. The cut-out's colour is F, estimated from I and alpha by "Fast Multi-Level Foreground
Estimation" (Germer, Uelwer, Conrad, Harmeling, 2020) as pymatting's estimate_foreground_ml
(pymatting 1.1.16) computes it: its defaults, its levels, its nearest-neighbour resizing, its sweep
order, its clipping. pymatting is the test oracle (tests/test_foreground.py), never imported here;
DESIGN.md, "Foreground colours", says why.

For pixel i with its four neighbours j (left, right, up, down; at the image's border the missing
neighbour is the pixel itself) held at their current values, the update minimises per channel

    (alpha_i F_i + (1 - alpha_i) B_i - I_i)^2 + sum_j w_ij ((F_i - F_j)^2 + (B_i - B_j)^2),
    w_ij = eps + omega |alpha_i - alpha_j|       (eps: regularization, omega: gradient_weight)

a 2 x 2 linear system (solve_matrices), solved and clipped to [0, 1]. A sweep updates every pixel
in raster order, each from its neighbours' newest values (Gauss-Seidel): the textbook form, one
pixel at a time (wavefront=False, for the tests). The fast form updates one anti-diagonal at a
time, vectorised, and computes the same numbers (diagonal_order says why; the tests prove it, bit
for bit; benchmarks/foreground_speed.py times both). The estimate goes coarse to fine: level 0 is
one pixel holding the mean colour of alpha > 0.9 (F) and of alpha < 0.1 (B), each level starts
from the one before resized by nearest neighbour, and is swept n_small_iterations times while both
its sides are at most small_size, n_big_iterations times above (level_sizes).
"""

from __future__ import annotations

import math
from typing import Optional, Union

import numpy as np
import torch

# pymatting's defaults (estimate_foreground_ml), kept: the field's cut-outs are made with them
REGULARIZATION = 1e-5  # eps
N_SMALL_ITERATIONS = 10
N_BIG_ITERATIONS = 2
SMALL_SIZE = 32
GRADIENT_WEIGHT = 1.0  # omega


def estimate_foreground(
    image: torch.Tensor,
    alpha: torch.Tensor,
    regularization: float = REGULARIZATION,
    n_small_iterations: int = N_SMALL_ITERATIONS,
    n_big_iterations: int = N_BIG_ITERATIONS,
    small_size: int = SMALL_SIZE,
    gradient_weight: float = GRADIENT_WEIGHT,
    wavefront: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The foreground and background colours of an image under its alpha matte.

    Args:
        image: (H, W, C) float in [0, 1], on any device.
        alpha: (H, W) float in [0, 1], on the image's device.
        wavefront: sweep one anti-diagonal at a time (the fast form); False: one pixel at a time in
            raster order (the textbook form, for the tests). Both give the same numbers.
    Returns:
        F, B: (H, W, C) float32 in [0, 1], on the image's device.
    """
    if image.ndim != 3 or alpha.shape != image.shape[:2] or min(alpha.shape) == 0:
        raise ValueError(f"estimate_foreground: an (H, W, C) image and an (H, W) alpha are "
                         f"needed, got {tuple(image.shape)} and {tuple(alpha.shape)}")
    image, alpha = image.float(), alpha.float().to(image.device)
    h0, w0, _ = image.shape

    # level 0: one pixel, the mean colour of the sure foreground and of the sure background
    sure_fg, sure_bg = alpha > 0.9, alpha < 0.1
    F = (image[sure_fg].double().sum(0) / (sure_fg.sum().double() + 1e-5)).float().view(1, 1, -1)
    B = (image[sure_bg].double().sum(0) / (sure_bg.sum().double() + 1e-5)).float().view(1, 1, -1)

    for h, w in level_sizes(h0, w0):
        image_l, alpha_l = resize_nearest(image, h, w), resize_nearest(alpha[..., None], h, w)
        F, B = resize_nearest(F, h, w), resize_nearest(B, h, w)
        small = h <= small_size and w <= small_size
        n_iterations = n_small_iterations if small else n_big_iterations
        F, B = sweep_level(image_l, alpha_l[..., 0], F, B, n_iterations, regularization,
                           gradient_weight, wavefront)
    return F, B


def level_sizes(h0: int, w0: int) -> list[tuple[int, int]]:
    """The levels' sizes, coarse to fine: level l of n = ceil(log2 max(H, W)) is
    round(H^(l/n)) x round(W^(l/n)), from 1 x 1 to H x W. (pymatting divides by n = 0 on a 1 x 1
    image; here n is at least 1.)"""
    n = max(1, math.ceil(math.log2(max(h0, w0))))
    return [(round(h0 ** (level / n)), round(w0 ** (level / n))) for level in range(n + 1)]


def resize_nearest(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(h_src, w_src, C) -> (h, w, C): pixel (y, x) takes the source pixel
    (y h_src // h, x w_src // w)."""
    rows = torch.arange(h, device=x.device) * x.shape[0] // h
    cols = torch.arange(w, device=x.device) * x.shape[1] // w
    return x.index_select(0, rows).index_select(1, cols)


# ----------------------------------------------------------------------------------------------
# One level: the per-pixel 2 x 2 systems, then the sweeps
# ----------------------------------------------------------------------------------------------


def solve_matrices(alpha: torch.Tensor, nbr: torch.Tensor, regularization: float,
                   gradient_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """alpha (L,) and each pixel's neighbours nbr (L, 4) -> what the update needs that does not
    change while a level is swept:

    the neighbour weights w_ij = eps + omega |alpha_i - alpha_j|, (L, 4) (a missing neighbour is
    the pixel itself: |alpha_i - alpha_i| = 0), and the inverse of the system's matrix
        M_i = [[alpha^2 + sum_j w_ij,  alpha (1 - alpha)          ],
               [alpha (1 - alpha),     (1 - alpha)^2 + sum_j w_ij ]],
    (L, 2, 2), in float64: the system is ill-conditioned where the weights are small (its
    determinant ~ eps), and pymatting solves it in float64."""
    a = alpha
    # w_ij = eps + omega |alpha_i - alpha_j|
    weights = regularization + gradient_weight * (a[:, None] - a[nbr]).abs()  # (L, 4)
    # in pymatting's precisions (numba's promotions): alpha^2 + sum_j w_ij summed in float32,
    # 1 - alpha and what it multiplies in float64; the solve in float64
    w = weights.unbind(1)
    m00 = (a * a + w[0] + w[1] + w[2] + w[3]).double()
    a64, w = a.double(), weights.double().unbind(1)
    m01 = a64 * (1 - a64)
    m11 = (1 - a64) * (1 - a64) + w[0] + w[1] + w[2] + w[3]
    det = m00 * m11 - m01 * m01  # > 0: sum_j w_ij >= 4 eps > 0
    inverse = torch.stack([m11, -m01, -m01, m00], -1).view(-1, 2, 2) / det[:, None, None]
    return weights, inverse


def sweep_level(image: torch.Tensor, alpha: torch.Tensor, F: torch.Tensor, B: torch.Tensor,
                n_iterations: int, regularization: float, gradient_weight: float,
                wavefront: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """n_iterations Gauss-Seidel sweeps of one level; (h, w, C) image, F and B, (h, w) alpha.

    The level's L = h w pixels are kept in a list, diagonal by diagonal (diagonal_order): one
    anti-diagonal is a contiguous run, and each pixel knows the list positions of its four
    neighbours, clamped at the border."""
    h, w, c = image.shape
    order, position, runs = diagonal_order(h, w, image.device)
    nbr = position[neighbours(h, w, image.device).index_select(0, order)]  # (L, 4)

    alpha, image = alpha.reshape(-1)[order], image.reshape(-1, c).index_select(0, order)
    weights, inverse = solve_matrices(alpha, nbr, regularization, gradient_weight)
    weights = weights[:, :, None, None]  # (L, 4, 1, 1)
    a, i = alpha[:, None].double(), image.double()  # float64, rounded once, as pymatting does
    rhs = torch.stack([a * i, (1 - a) * i], 1).float()  # (L, 2, C): [alpha I; (1 - alpha) I]
    FB = torch.stack([F, B], 2).view(-1, 2, c).index_select(0, order)  # (L, 2, C): the state

    if wavefront:  # one anti-diagonal at a time
        sweep = runs
    else:  # the textbook form: one pixel at a time, row by row
        sweep = [slice(p, p + 1) for p in position.tolist()]
    for _ in range(n_iterations):
        for s in sweep:
            # b = [alpha_i I_i + sum_j w_ij F_j;  (1 - alpha_i) I_i + sum_j w_ij B_j]
            neighbours_FB = FB.index_select(0, nbr[s].view(-1)).view(-1, 4, 2, c)  # (n, 4, 2, C)
            pull = weights[s] * neighbours_FB  # w_ij [F_j; B_j], (n, 4, 2, C)
            b = rhs[s] + pull[:, 0] + pull[:, 1] + pull[:, 2] + pull[:, 3]  # pymatting's order
            # [F_i; B_i] = clip(M_i^-1 b, 0, 1)
            FB[s] = (inverse[s] @ b.double()).clamp(0, 1)  # (n, 2, 2) @ (n, 2, C), float64
    FB = FB.index_select(0, position).view(h, w, 2, c)
    return FB[:, :, 0].contiguous(), FB[:, :, 1].contiguous()


def neighbours(h: int, w: int, device) -> torch.Tensor:
    """(h w, 4): the flat indices (y w + x) of each pixel's left, right, up and down neighbour,
    clamped to the image (at the border the missing neighbour is the pixel itself)."""
    y, x = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device),
                          indexing="ij")
    left, right = y * w + (x - 1).clamp(min=0), y * w + (x + 1).clamp(max=w - 1)
    up, down = (y - 1).clamp(min=0) * w + x, (y + 1).clamp(max=h - 1) * w + x
    return torch.stack([left, right, up, down], -1).view(-1, 4)


def diagonal_order(h: int, w: int, device) -> tuple[torch.Tensor, torch.Tensor, list[slice]]:
    """The pixels diagonal by diagonal, by row within a diagonal: order (L,), the flat index
    y w + x of each list position; position (L,), the list position of each flat index; and the
    run of each anti-diagonal y + x = d in the list, d = 0 ... h + w - 2.

    Why this order computes the raster sweep's numbers: pixel (y, x) reads (y - 1, x) and
    (y, x - 1), which a raster sweep has updated, and (y + 1, x) and (y, x + 1), which it has not:
    diagonal d - 1 done, d + 1 not yet. The pixels of one diagonal never read each other, so
    updating them together, diagonal after diagonal, gives each pixel the same inputs."""
    d = torch.arange(h + w - 1, device=device)
    first_row = (d - w + 1).clamp(min=0)  # of each diagonal
    length = torch.minimum(d, torch.full_like(d, h - 1)) - first_row + 1
    start = length.cumsum(0) - length  # of each diagonal's run
    y, x = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device),
                          indexing="ij")
    position = (start[y + x] + y - first_row[y + x]).view(-1)
    order = torch.empty_like(position)
    order[position] = torch.arange(h * w, device=device)
    runs = [slice(a, a + n) for a, n in zip(start.tolist(), length.tolist())]
    return order, position, runs


# ----------------------------------------------------------------------------------------------
# The cut-out
# ----------------------------------------------------------------------------------------------


def cutout(image: np.ndarray, alpha: np.ndarray,
           device: Optional[Union[str, torch.device]] = None) -> np.ndarray:
    """The RGBA cut-out: (H, W, 3) uint8 image and (H, W) float alpha in [0, 1] -> (H, W, 4) uint8,
    its colour the estimated foreground F, its transparency the alpha, both rounded to 0-255. The
    estimate runs on `device`, by default the GPU if there is one (as predict.py picks it)."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    alpha = np.asarray(alpha, dtype=np.float32)
    F, _ = estimate_foreground(torch.tensor(image, device=device) / 255,  # copies: read-only ok
                               torch.tensor(alpha, device=device))
    rgb = (F * 255).round().to(torch.uint8).cpu().numpy()  # (H, W, 3)
    return np.concatenate([rgb, np.round(alpha * 255).astype(np.uint8)[:, :, None]], axis=2)
