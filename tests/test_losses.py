"""losses.py: hand-computed values, minima, masking of padding, gradients, autocast."""

import math

import pytest
import torch

import losses
from losses import (
    bce_loss,
    grad_loss,
    iou_loss,
    l1_loss,
    laplacian_loss,
    matting_loss,
    seg_loss,
    ssim_loss,
)

TERMS = [bce_loss, iou_loss, ssim_loss, l1_loss, grad_loss, laplacian_loss]


def random_batch(b=2, h=23, w=30, seed=0):
    """Logits, a soft prediction in [0, 1], a binary target, a soft (alpha) target."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, 1, h, w, generator=g) * 3
    pred = torch.rand(b, 1, h, w, generator=g)
    mask = (torch.rand(b, 1, h, w, generator=g) > 0.5).float()
    alpha = torch.rand(b, 1, h, w, generator=g)
    return logits, pred, mask, alpha


# ----------------------------------------------------------------------------------------------
# Hand-computed values
# ----------------------------------------------------------------------------------------------

def test_bce_by_hand():
    # sigmoid(0) = 1/2 vs target 1: ln 2; sigmoid(ln 3) = 3/4 vs target 0: -ln(1/4) = ln 4.
    logits = torch.tensor([0.0, math.log(3)]).view(1, 1, 1, 2)
    target = torch.tensor([1.0, 0.0]).view(1, 1, 1, 2)
    assert bce_loss(logits, target).item() == pytest.approx(
        (math.log(2) + math.log(4)) / 2, rel=1e-6
    )
    valid = torch.tensor([1.0, 0.0]).view(1, 1, 1, 2)
    assert bce_loss(logits, target, valid).item() == pytest.approx(math.log(2), rel=1e-6)


def test_iou_by_hand():
    # Image 1: p = [.5, .5, 1, 0], g = [1, 0, 1, 0]: I = 1.5, U = 2 + 2 - 1.5 = 2.5 -> 1 - 0.6 =
    # 0.4. Image 2: p = [1, 1, 0, 0], g = [0, 0, 1, 1]: I = 0 -> 1. Batch mean 0.7.
    prob = torch.tensor([[0.5, 0.5, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0]]).view(2, 1, 2, 2)
    target = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 1.0, 1.0]]).view(2, 1, 2, 2)
    assert iou_loss(prob, target).item() == pytest.approx(0.7, abs=1e-6)


def test_l1_by_hand():
    pred = torch.tensor([0.0, 0.25, 1.0, 0.5]).view(1, 1, 2, 2)
    target = torch.tensor([1.0, 0.0, 1.0, 0.0]).view(1, 1, 2, 2)
    assert l1_loss(pred, target).item() == pytest.approx(1.75 / 4)
    valid = torch.tensor([0.0, 1.0, 1.0, 1.0]).view(1, 1, 2, 2)
    assert l1_loss(pred, target, valid).item() == pytest.approx(0.75 / 3)


def test_grad_by_hand():
    # 3x3 Sobel gradients, zero padding, then (|G pred - G target| + 0.01 |G pred|) summed over x
    # and y and divided by the number of pixels. (1-pixel forward differences give 4.04 / 25,
    # 0.606 / 9 and 2.01 / 3 on these three cases.)
    # An impulse of 1 in a 5x5 map of zeros: G_x and G_y are the two kernels placed around it,
    # sum |G_x| = sum |G_y| = 1 + 2 + 1 + 1 + 2 + 1 = 8. Against a zero target: (16 + 0.16) / 25.
    impulse = torch.zeros(1, 1, 5, 5)
    impulse[0, 0, 2, 2] = 1
    zeros = torch.zeros_like(impulse)
    assert grad_loss(impulse, zeros).item() == pytest.approx(16.16 / 25, rel=1e-6)
    # A 3x3 ramp 0, 0.1, 0.2 along x, zero target. G_x = sum over the rows (weights 1, 2, 1, those
    # inside the map) of p(x + 1) - p(x - 1): middle row 4 x (0.1, 0.2, -0.1), top and bottom rows
    # 3 x (0.1, 0.2, -0.1): sum |G_x| = 1.6 + 2 x 1.2 = 4. G_y: 0 in the middle row; in the top
    # row the row below weighted 1, 2, 1 over the columns inside: 0.1, 0.4, 0.5 (bottom row: minus
    # that): sum |G_y| = 2. (4 + 2) x 1.01 / 9.
    ramp = torch.tensor([0.0, 0.1, 0.2]).repeat(3, 1).view(1, 1, 3, 3)
    assert grad_loss(ramp, torch.zeros_like(ramp)).item() == pytest.approx(6.06 / 9, rel=1e-6)
    # A 1 x 3 row, G_y = 0. pred = [0, 1, 1]: G_x = 2 x (1, 1, -1); target = [0, 0, 1]:
    # 2 x (0, 1, 0). sum |diff| = 2 + 0 + 2 = 4, smooth term 0.01 x 6 -> 4.06 / 3 pixels.
    pred = torch.tensor([0.0, 1.0, 1.0]).view(1, 1, 1, 3)
    target = torch.tensor([0.0, 0.0, 1.0]).view(1, 1, 1, 3)
    assert grad_loss(pred, target).item() == pytest.approx(4.06 / 3, rel=1e-6)


def test_sobel_gradient_of_a_ramp_is_eight_times_its_slope():
    # Inside the map the Sobel kernel sums (1 + 2 + 1) differences over 2 pixels: 8 x the slope,
    # the factor by which L_Grad's weight in Eq. (10) differs from 1-pixel differences.
    y, x = torch.meshgrid(torch.arange(6.0), torch.arange(7.0), indexing="ij")
    g = losses._sobel((0.03 * x + 0.05 * y).view(1, 1, 6, 7))
    inside = (slice(None), slice(1, -1), slice(1, -1))
    assert torch.allclose(g[0, 0][inside[1:]], torch.full((4, 5), 8 * 0.03))
    assert torch.allclose(g[0, 1][inside[1:]], torch.full((4, 5), 8 * 0.05))


def test_grad_loss_sees_the_valid_region_as_a_whole_image():
    # Padding is set to 0 before filtering: the valid region scores exactly as the cropped image
    # would alone, whatever the padding holds.
    g = torch.Generator().manual_seed(1)
    pred, target = torch.rand(1, 1, 9, 11, generator=g), torch.rand(1, 1, 9, 11, generator=g)
    valid = torch.zeros_like(pred)
    valid[..., :6, :8] = 1
    crop = grad_loss(pred[..., :6, :8], target[..., :6, :8]).item()
    assert grad_loss(pred, target, valid).item() == pytest.approx(crop, rel=1e-6)


def test_ssim_of_constant_maps_by_hand():
    # Constant maps a, b: the local means are a, b and all (co)variances 0 up to the border,
    # so SSIM = (2ab + C1) / (a^2 + b^2 + C1) everywhere.
    a, b = 0.8, 0.3
    pred = torch.full((1, 1, 9, 14), a)
    target = torch.full((1, 1, 9, 14), b)
    c1 = losses.SSIM_C1
    expected = 1 - (2 * a * b + c1) / (a * a + b * b + c1)
    assert ssim_loss(pred, target).item() == pytest.approx(expected, rel=1e-5)


# ----------------------------------------------------------------------------------------------
# Minima and properties
# ----------------------------------------------------------------------------------------------

def test_perfect_prediction_is_the_minimum():
    _, _, mask, alpha = random_batch()
    logits = (mask * 2 - 1) * 200  # sigmoid saturates to exactly 0 / 1 in float32
    total, terms = seg_loss(logits, mask)
    assert terms["bce"].item() == 0 and terms["iou"].item() == 0
    assert terms["ssim"].item() == pytest.approx(0, abs=1e-6)
    total, terms = matting_loss(alpha, alpha)
    assert terms["l1"].item() == 0 and terms["laplacian"].item() == 0
    assert terms["ssim"].item() == pytest.approx(0, abs=1e-6)
    # Dai et al.'s smoothness term is what remains of the gradient loss.
    assert terms["grad"].item() == pytest.approx(
        0.01 * grad_loss(torch.zeros_like(alpha), alpha, smooth=0).item()
    )
    assert grad_loss(alpha, alpha, smooth=0).item() == 0
    assert total.item() == pytest.approx(sum(t.item() for t in terms.values()))


def test_losses_grow_with_error():
    _, pred, _, alpha = random_batch()
    noise = torch.rand_like(alpha) - 0.5
    small, large = (alpha + 0.1 * noise).clamp(0, 1), (alpha + 0.8 * noise).clamp(0, 1)
    for fn in (l1_loss, ssim_loss, grad_loss, laplacian_loss):
        assert fn(alpha, alpha).item() < fn(small, alpha).item() < fn(large, alpha).item(), (
            fn.__name__
        )


def test_laplacian_is_homogeneous_in_the_error():
    # The pyramid is linear and the norm is L1: doubling the error doubles the loss.
    _, pred, _, alpha = random_batch(h=37, w=50)
    error = pred - alpha
    one, two = laplacian_loss(alpha + error, alpha), laplacian_loss(alpha + 2 * error, alpha)
    assert two.item() == pytest.approx(2 * one.item(), rel=1e-5)
    assert one.item() > 0


@pytest.mark.parametrize("fn", [seg_loss, matting_loss])
def test_padding_does_not_count(fn):
    logits, pred, mask, alpha = random_batch(h=32, w=40)
    x, target = (logits, mask) if fn is seg_loss else (pred, alpha)
    valid = torch.zeros_like(target)
    valid[0, :, :20, :27] = 1  # image 0 padded on the bottom / right, image 1 fully valid
    valid[1] = 1
    pad = valid == 0
    x2, target2 = x.clone(), target.clone()
    x2[pad] = torch.randn(int(pad.sum())) * 5 if fn is seg_loss else torch.rand(int(pad.sum()))
    target2[pad] = torch.rand(int(pad.sum())).round()
    x.requires_grad_(True)
    total, terms = fn(x, target, valid)
    total2, terms2 = fn(x2, target2, valid)
    for k in terms:
        assert terms[k].item() == pytest.approx(terms2[k].item(), rel=1e-5, abs=1e-7), k
    total.backward()
    assert torch.all(x.grad[pad] == 0) and x.grad[~pad].abs().sum() > 0
    # And the valid pixels do count: changing one changes the loss.
    x3 = x2.detach().clone()
    x3[0, 0, 5, 5] += 0.5 if fn is seg_loss else -x3[0, 0, 5, 5] + 1 - target[0, 0, 5, 5].round()
    assert fn(x3, target2, valid)[0].item() != pytest.approx(total2.item(), rel=1e-7)


def test_valid_mask_of_ones_equals_no_mask():
    logits, pred, mask, alpha = random_batch()
    ones = torch.ones_like(mask)
    for fn, x, t in ((seg_loss, logits, mask), (matting_loss, pred, alpha)):
        assert fn(x, t)[0].item() == pytest.approx(fn(x, t, ones)[0].item(), rel=1e-6)


@pytest.mark.parametrize("value", [0.0, 1.0])
def test_finite_gradients_on_constant_inputs(value):
    target = torch.full((2, 1, 16, 16), value)
    # confident logits
    for fn, x in ((seg_loss, torch.full((2, 1, 16, 16), 30.0 * (2 * value - 1))),
                  (seg_loss, torch.zeros(2, 1, 16, 16)),
                  (matting_loss, torch.full((2, 1, 16, 16), value)),
                  (matting_loss, torch.full((2, 1, 16, 16), 1 - value))):
        x = x.clone().requires_grad_(True)
        total, terms = fn(x, target)
        total.backward()
        assert torch.isfinite(total) and all(torch.isfinite(t) for t in terms.values())
        assert torch.isfinite(x.grad).all()


def test_returns_scalars_and_named_terms():
    logits, pred, mask, alpha = random_batch()
    total, terms = seg_loss(logits, mask)
    assert set(terms) == {"bce", "iou", "ssim"} and total.dim() == 0
    assert all(t.dim() == 0 for t in terms.values())
    total, terms = matting_loss(pred, alpha)
    assert set(terms) == {"l1", "ssim", "grad", "laplacian"} and total.dim() == 0
    assert total.item() == pytest.approx(sum(t.item() for t in terms.values()), rel=1e-6)


def test_float32_inside_bf16_autocast():
    logits, pred, mask, alpha = random_batch()
    plain = [seg_loss(logits, mask)[0], matting_loss(pred, alpha)[0]]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto = [seg_loss(logits, mask)[0], matting_loss(pred, alpha)[0]]
        from_bf16 = seg_loss(logits.bfloat16(), mask.bfloat16())[0]
    for p, a in zip(plain, auto):
        assert a.dtype == torch.float32 and a.item() == pytest.approx(p.item(), rel=1e-6)
    # bf16 inputs are upcast: the result is the float32 loss of the rounded inputs.
    assert from_bf16.dtype == torch.float32
    assert from_bf16.item() == pytest.approx(
        seg_loss(logits.bfloat16().float(), mask)[0].item(), rel=1e-6
    )


def test_odd_and_tiny_sizes():
    for h, w in ((1, 1), (2, 3), (5, 7), (33, 17)):
        logits, pred, mask, alpha = random_batch(b=1, h=h, w=w)
        for fn, x, t in ((seg_loss, logits, mask), (matting_loss, pred, alpha)):
            total, _ = fn(x, t)
            assert torch.isfinite(total)


# ----------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fn", [seg_loss, matting_loss] + TERMS)
def test_bad_input(fn):
    x = torch.rand(2, 1, 8, 8)
    with pytest.raises(ValueError, match="shape mismatch"):
        fn(x, torch.rand(2, 1, 8, 9))
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        fn(x[:, 0], x[:, 0])
    with pytest.raises(ValueError, match="floating-point"):
        fn(x, (x > 0.5).long())
    with pytest.raises(ValueError, match="valid must be"):
        fn(x, x, torch.ones(2, 1, 8, 7))
    with pytest.raises(ValueError, match="torch tensor"):
        fn(x.numpy(), x)
