"""Tests for foreground.py: equal to its oracle, pymatting's estimate_foreground_ml (a test
dependency only), on the same inputs; the fast sweep equal to the textbook one; properties; the
cutout that frame.output_images makes from it; and benchmarks/foreground_error.py's table."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pymatting import estimate_foreground_ml

import foreground
import readers
from benchmarks import foreground_error
from foreground import estimate_foreground
from frame import output_images

# max |ours - pymatting's| over F and B, measured on this suite's cases: 1.4e-14 (F bit for bit;
# B differs only in values near 0; CPU, torch 2.13.0, pymatting 1.1.16 on numba 0.68.1); the
# tolerance leaves room for another processor's rounding in the float64 solve of an
# ill-conditioned 2 x 2 system
TOLERANCE = 1e-5
SIZES = [(1, 2), (2, 1), (3, 5), (7, 4), (17, 33), (40, 31), (64, 64), (65, 100)]


def random_case(h: int, w: int, seed: int, c: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """An image and an alpha with sure foreground (1), sure background (0) and partial pixels."""
    rng = np.random.default_rng(seed)
    image = rng.random((h, w, c), dtype=np.float32)
    alpha = rng.random((h, w), dtype=np.float32)
    alpha[rng.random((h, w)) < 0.3] = 1
    alpha[rng.random((h, w)) < 0.3] = 0
    return image, alpha


def soft_disc(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """A hand-made matte: a red disc with a soft rim over a blue-green gradient, composited."""
    y, x = np.mgrid[:h, :w].astype(np.float32)
    r = np.hypot(y - h / 2, x - w / 2) / (min(h, w) / 3)
    alpha = np.clip((1.2 - r) / 0.4, 0, 1).astype(np.float32)  # 1 inside, a ramp, 0 outside
    fg = np.array([0.9, 0.1, 0.1], dtype=np.float32)
    bg = np.stack([0 * x, x / w, 1 - y / h], -1).astype(np.float32)
    return alpha[..., None] * fg + (1 - alpha[..., None]) * bg, alpha


def ours(image: np.ndarray, alpha: np.ndarray, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    F, B = estimate_foreground(torch.from_numpy(image), torch.from_numpy(alpha), **kwargs)
    return F.numpy(), B.numpy()


def oracle(image: np.ndarray, alpha: np.ndarray, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    return estimate_foreground_ml(image, alpha, return_background=True, **kwargs)


@pytest.mark.parametrize("h, w", SIZES)
def test_equal_to_pymatting(h, w):
    for image, alpha in (random_case(h, w, seed=h * 1000 + w), soft_disc(h, w)):
        for found, expected in zip(ours(image, alpha), oracle(image, alpha)):
            assert found.shape == expected.shape == (h, w, 3)
            np.testing.assert_allclose(found, expected, rtol=0, atol=TOLERANCE)


def test_equal_to_pymatting_with_other_parameters():
    """Every parameter reaches the computation as pymatting's does (one channel, and four)."""
    parameters = dict(regularization=1e-3, n_small_iterations=3, n_big_iterations=4,
                      small_size=8, gradient_weight=0.25)
    for c in (1, 4):
        image, alpha = random_case(23, 41, seed=c, c=c)
        for found, expected in zip(ours(image, alpha, **parameters),
                                   oracle(image, alpha, **parameters)):
            np.testing.assert_allclose(found, expected, rtol=0, atol=TOLERANCE)
        default = ours(image, alpha)[0]
        assert np.abs(default - ours(image, alpha, **parameters)[0]).max() > 1e-3  # they matter


@pytest.mark.parametrize("h, w", [(1, 1), (1, 5), (6, 1), (5, 7), (12, 9)])
def test_the_wavefront_sweep_equals_the_raster_sweep(h, w):
    """One anti-diagonal at a time computes what one pixel at a time, row by row, computes: bit
    for bit (the same operations on the same inputs)."""
    image, alpha = random_case(h, w, seed=7)
    fast = ours(image, alpha, n_small_iterations=3)
    textbook = ours(image, alpha, n_small_iterations=3, wavefront=False)
    for a, b in zip(fast, textbook):
        np.testing.assert_array_equal(a, b)


def test_the_level_sizes_as_pymatting_makes_them():
    """n = ceil(log2 max(H, W)) levels above 1 x 1, level l of size round(H^(l/n)) x
    round(W^(l/n)): hand-computed."""
    assert foreground.level_sizes(1024, 1024) == [(2**k, 2**k) for k in range(11)]
    assert foreground.level_sizes(5, 3) == [(1, 1), (2, 1), (3, 2), (5, 3)]
    assert foreground.level_sizes(1, 1) == [(1, 1), (1, 1)]  # pymatting divides by zero here


def test_resize_nearest_by_hand():
    x = torch.arange(6.0).view(2, 3, 1)  # [[0, 1, 2], [3, 4, 5]]
    assert foreground.resize_nearest(x, 4, 2)[..., 0].tolist() == [[0, 1], [0, 1], [3, 4], [3, 4]]


def test_a_composite_of_known_colours_gives_them_back():
    """F and B constant, alpha a ramp between sure foreground and sure background: the estimate
    is F (and B) where the composite is far from it."""
    h, w = 20, 31
    fg, bg = torch.tensor([0.9, 0.2, 0.1]), torch.tensor([0.1, 0.3, 0.8])
    alpha = torch.zeros(h, w)
    alpha[:, :10] = 1
    alpha[:, 10:21] = torch.linspace(1, 0, 11)
    image = alpha[..., None] * fg + (1 - alpha[..., None]) * bg
    F, B = estimate_foreground(image, alpha)
    partial = (alpha > 0) & (alpha < 1)
    assert (image[partial] - fg).abs().max() > 0.5
    assert (F[partial] - fg).abs().max() < 1e-4 and (B[partial] - bg).abs().max() < 1e-4


@settings(max_examples=25, deadline=None)
@given(h=st.integers(1, 12), w=st.integers(1, 12), c=st.integers(1, 4), seed=st.integers(0, 999))
def test_properties(h, w, c, seed):
    """Shapes and range: (H, W, C) float32 in [0, 1], F and B. Alpha 1 everywhere: F is the image
    (the data term alpha^2 against the neighbours' weights, 4 eps at most; no gradient)."""
    image, alpha = random_case(h, w, seed, c)
    F, B = estimate_foreground(torch.from_numpy(image), torch.from_numpy(alpha))
    for x in (F, B):
        assert x.shape == (h, w, c) and x.dtype == torch.float32
        assert 0 <= x.min() and x.max() <= 1
    F, _ = estimate_foreground(torch.from_numpy(image), torch.ones(h, w))
    eps = foreground.REGULARIZATION
    assert (F - torch.from_numpy(image)).abs().max() <= 4 * eps / (1 + 4 * eps) + 1e-6


def test_bad_shapes_are_one_line():
    with pytest.raises(ValueError, match=r"an \(H, W, C\) image and an \(H, W\) alpha"):
        estimate_foreground(torch.zeros(4, 5, 3), torch.zeros(5, 4))
    with pytest.raises(ValueError, match="got"):
        estimate_foreground(torch.zeros(0, 5, 3), torch.zeros(0, 5))


# ----------------------------------------------------------------------------------------------
# The cutout: frame.output_images
# ----------------------------------------------------------------------------------------------


def test_the_cutout_is_the_estimated_foreground_not_the_composite():
    image, alpha = soft_disc(40, 56)
    image8 = np.round(image * 255).astype(np.uint8)
    maps = {"mask": alpha > 0.5, "alpha": alpha}
    out = output_images(image8, maps, device="cpu")
    cut = out["cutout"]
    assert cut.shape == (40, 56, 4) and cut.dtype == np.uint8
    np.testing.assert_array_equal(cut[..., 3], np.round(alpha * 255).astype(np.uint8))
    np.testing.assert_array_equal(out["alpha"], cut[..., 3])
    F, _ = estimate_foreground(torch.from_numpy(image8) / 255, torch.from_numpy(alpha))
    np.testing.assert_array_equal(cut[..., :3], (F * 255).round().to(torch.uint8).numpy())
    # in the soft rim the composite carries the background; the cutout is the disc's red
    rim = (alpha > 0.05) & (alpha < 0.95)
    red = np.array([0.9, 0.1, 0.1]) * 255
    before = np.abs(image8[rim] - red).mean()
    after = np.abs(cut[..., :3][rim] - red).mean()
    assert before > 50 and after < 5, (before, after)  # measured: 75.6 and 2.8
    # where the alpha is 1, the image's own colours (to the rounding of 4 eps)
    sure = alpha == 1
    assert np.abs(cut[..., :3][sure].astype(int) - image8[sure]).max() <= 1


# ----------------------------------------------------------------------------------------------
# The error on the matting test composites: benchmarks/foreground_error.py
# ----------------------------------------------------------------------------------------------


def test_the_error_benchmark_on_the_toy_composites(toy, capsys):
    """The table's rows, recomputed here for the true alpha: composite and estimate against the
    true foreground over the partial pixels; the estimate closer."""
    assert foreground_error.main([str(toy / "AIM")]) == 0
    cells = [line.strip("| ").split(" | ") for line in capsys.readouterr().out.splitlines()
             if line.startswith("| ") and "alpha |" in line and "MAE" not in line]
    rows = {row[0]: [float(v) for v in row[1:]] for row in cells}
    assert set(rows) == {"true alpha", "SAMA's alpha"}
    test = toy / "AIM" / "Combined_Dataset" / "Test_set" / "Adobe-licensed images"
    before, after, n = 0.0, 0.0, 0
    for merged in sorted((test / "merged").iterdir()):
        image = readers.load_image(merged)
        alpha = readers.load_mask(test / "alpha_copy" / merged.name)
        fg = readers.load_image(test / "fg" / (merged.stem.rsplit("_", 1)[0] + ".png"))
        partial = (alpha > 0) & (alpha < 255)
        rgb = foreground.cutout(image, alpha / np.float32(255), "cpu")[..., :3]
        before += np.abs(image[partial].astype(float) - fg[partial]).sum()
        after += np.abs(rgb[partial].astype(float) - fg[partial]).sum()
        n += partial.sum() * 3
    assert rows["true alpha"][:2] == pytest.approx([before / n, after / n], abs=0.005)
    assert rows["true alpha"][1] < rows["true alpha"][0] / 2
    assert rows["SAMA's alpha"][0] == rows["true alpha"][0]  # the same pixels, the same composite


def test_the_error_benchmark_refuses_a_folder_without_the_layout(tmp_path, capsys):
    assert foreground_error.main([str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith(f"error: {tmp_path}")
