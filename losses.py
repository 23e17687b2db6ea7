"""Training losses (paper Sec. "Training Loss"): L_seg = BCE + IoU + SSIM, L_matting = L1 + SSIM +
Grad + Laplacian (Eq. 10).

Every loss takes batches (B, 1, H, W) and an optional valid-pixel mask `valid` (B, 1, H, W), 1 on
image pixels and 0 on padding (SAM pads images to 1024 x 1024): padded pixels never change a loss
value, and get zero gradient. Losses are computed in float32 with autocast disabled, so they behave
the same under bf16 autocast on CUDA. Plain torch only.
"""

import torch
import torch.nn.functional as F

SSIM_C1, SSIM_C2 = 0.01 ** 2, 0.03 ** 2  # (K1 L)^2, (K2 L)^2 with data range L = 1
IOU_EPS = 1e-6  # keeps IoU of an empty target and an all-zero prediction finite (and equal to 0)


def _prepare(pred, target, valid, pred_name):
    """Checks shapes and returns float32 (pred, target, valid) with valid all ones when None."""
    for x, name in ((pred, pred_name), (target, "target")):
        if not torch.is_tensor(x):
            raise ValueError(f"{name} must be a torch tensor, got {type(x).__name__}")
        if x.dim() != 4 or x.shape[1] != 1:
            raise ValueError(f"{name} must have shape (B, 1, H, W), got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor, got {x.dtype}")
    if pred.shape != target.shape:
        raise ValueError(
            f"shape mismatch: {pred_name} {tuple(pred.shape)} vs target {tuple(target.shape)}"
        )
    if valid is None:
        valid = torch.ones_like(target, dtype=torch.float32)
    else:
        if not torch.is_tensor(valid) or valid.shape != target.shape:
            shape = tuple(valid.shape) if torch.is_tensor(valid) else type(valid).__name__
            raise ValueError(
                f"valid must be a tensor of shape {tuple(target.shape)} like target, got {shape}"
            )
        valid = valid.float()
    return pred.float(), target.float(), valid


def _no_autocast(device):
    return torch.autocast(device_type=device.type, enabled=False)


def _masked_mean(x, valid):
    """Mean of x over valid pixels of the whole batch."""
    return (x * valid).sum() / valid.sum().clamp_min(1.0)


# ----------------------------------------------------------------------------------------------
# Individual terms
# ----------------------------------------------------------------------------------------------

def bce_loss(logits, target, valid=None):
    """Binary cross-entropy on logits, mean over valid pixels.

    L_BCE = -mean[ g log sigmoid(z) + (1 - g) log(1 - sigmoid(z)) ], computed from the logits z
    (log-sum-exp form) for numerical stability.

    Args:
        logits: (B, 1, H, W). target: (B, 1, H, W) in [0, 1]. valid: (B, 1, H, W) or None.

    Returns:
        scalar tensor.
    """
    logits, target, valid = _prepare(logits, target, valid, "logits")
    with _no_autocast(logits.device):
        return _masked_mean(
            F.binary_cross_entropy_with_logits(logits, target, reduction="none"), valid
        )


def iou_loss(prob, target, valid=None):
    """Soft IoU loss, per image then averaged over the batch.

    L_IoU = 1 - (sum p g + eps) / (sum p + sum g - sum p g + eps), sums over valid pixels, eps =
    1e-6.

    Args:
        prob: (B, 1, H, W) in [0, 1]. target: (B, 1, H, W) in [0, 1]. valid: (B, 1, H, W) or None.

    Returns:
        scalar tensor.
    """
    prob, target, valid = _prepare(prob, target, valid, "prob")
    with _no_autocast(prob.device):
        p, g = prob * valid, target * valid
        inter = (p * g).sum(dim=(1, 2, 3))
        union = p.sum(dim=(1, 2, 3)) + g.sum(dim=(1, 2, 3)) - inter
        return (1 - (inter + IOU_EPS) / (union + IOU_EPS)).mean()


def _gaussian_window(size=11, sigma=1.5, device=None):
    x = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2
    g = torch.exp(-x * x / (2 * sigma * sigma))
    return g / g.sum()


def _blur(x, window):
    """Separable Gaussian filter with zero padding: (N, C, H, W) -> (N, C, H, W), per channel."""
    c, k = x.shape[1], window.numel()
    wy = window.view(1, 1, k, 1).expand(c, 1, k, 1)
    wx = window.view(1, 1, 1, k).expand(c, 1, 1, k)
    x = F.conv2d(x, wy, padding=(k // 2, 0), groups=c)
    return F.conv2d(x, wx, padding=(0, k // 2), groups=c)


def ssim_loss(pred, target, valid=None):
    """1 - mean SSIM over valid pixels, 11x11 Gaussian window, sigma 1.5 (Wang et al. 2004).

    SSIM = (2 mu_x mu_y + C1)(2 s_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2)),
    C1 = 0.01^2, C2 = 0.03^2. The local statistics are Gaussian-weighted means over the valid pixels
    of the window only (normalised convolution: blur(v x) / blur(v)), so padding and the outside of
    the image never enter a window; a constant map has mu = the constant and s = 0 right up to the
    border.

    Args:
        pred: (B, 1, H, W) in [0, 1]. target: (B, 1, H, W) in [0, 1]. valid: (B, 1, H, W) or None.

    Returns:
        scalar tensor.
    """
    pred, target, valid = _prepare(pred, target, valid, "pred")
    with _no_autocast(pred.device):
        x, y, v = pred * valid, target * valid, valid
        window = _gaussian_window(device=pred.device)
        stats = _blur(torch.cat([v, x, y, x * x, y * y, x * y], dim=1), window)  # (B, 6, H, W)
        weight = stats[:, :1].clamp_min(1e-6)  # > 0 on every valid pixel (its own window weight)
        mu_x, mu_y, xx, yy, xy = (stats[:, 1:] / weight).unbind(dim=1)
        var_x, var_y, cov = xx - mu_x * mu_x, yy - mu_y * mu_y, xy - mu_x * mu_y
        ssim = ((2 * mu_x * mu_y + SSIM_C1) * (2 * cov + SSIM_C2)
                / ((mu_x * mu_x + mu_y * mu_y + SSIM_C1) * (var_x + var_y + SSIM_C2)))
        return 1 - _masked_mean(ssim.unsqueeze(1), valid)


def l1_loss(pred, target, valid=None):
    """L1 = mean |alpha - alpha_gt| over valid pixels.

    Args:
        pred: (B, 1, H, W). target: (B, 1, H, W). valid: (B, 1, H, W) or None.

    Returns:
        scalar tensor.
    """
    pred, target, valid = _prepare(pred, target, valid, "pred")
    with _no_autocast(pred.device):
        return _masked_mean((pred - target).abs(), valid)


SOBEL_X = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))  # 3x3 Sobel d/dx; transposed: d/dy


def _sobel(x):
    """(B, 1, H, W) -> (B, 2, H, W): 3x3 Sobel gradients along x and y, zero padding at the border.

    A ramp of slope s gives 8 s inside the map (1 + 2 + 1 rows, each a difference over 2 pixels).
    """
    kx = torch.tensor(SOBEL_X, dtype=x.dtype, device=x.device)
    return F.conv2d(x, torch.stack([kx, kx.t()]).unsqueeze(1), padding=1)  # (B, 2, H, W)


def grad_loss(pred, target, valid=None, smooth=0.01):
    """Gradient-penalty loss of Dai et al. 2022 (their Eq. 4), as ViTMatte and Matte Anything
    compute it.

    L_Grad = sum_{valid pixels, d in x, y} (|G_d alpha - G_d alpha_gt| + smooth |G_d alpha|)
             / #valid pixels, smooth = 0.01,
    G_x, G_y = 3x3 Sobel gradients with zero padding. Both maps are set to 0 on padding first, so
    the valid region is filtered as the lineage filters a whole image (zero padding at its border)
    and a padded pixel's value never enters. For a perfect prediction L_Grad = smooth * mean
    |G alpha_gt|, not 0.

    Args:
        pred: (B, 1, H, W). target: (B, 1, H, W). valid: (B, 1, H, W) or None. smooth: float.

    Returns:
        scalar tensor.
    """
    pred, target, valid = _prepare(pred, target, valid, "pred")
    with _no_autocast(pred.device):
        g_pred, g_target = _sobel(pred * valid), _sobel(target * valid)  # (B, 2, H, W) each
        # |G alpha - G alpha_gt| + smooth |G alpha|, per pixel and direction
        per_pixel = (g_pred - g_target).abs() + smooth * g_pred.abs()
        return (per_pixel * valid).sum() / valid.sum().clamp_min(1.0)


def _pyramid_kernel(device):
    k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], device=device) / 16
    return torch.outer(k, k).view(1, 1, 5, 5)


def _gauss5(x, kernel):
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), kernel)


def laplacian_loss(pred, target, valid=None, levels=5):
    """Laplacian-pyramid loss (Hou and Liu 2019): L_Lap = sum_{i=1..5} 2^(i-1) mean |L^i(alpha) -
    L^i(alpha_gt)|.

    L^i is level i of the Laplacian pyramid (5x5 binomial kernel, reflect padding, x2 down /
    up-sampling): L^i = G^i - up(down(G^i)), G^1 = the map, G^(i+1) = down(G^i). The pyramid is
    linear, so the loss is the pyramid of the error e = (alpha - alpha_gt) * valid; padding thus
    carries no error. Level i's sum of |L^i| is divided by its number of valid pixels (valid
    subsampled like the maps), which is the plain mean when valid is None. Odd sizes are handled by
    cropping the up-sampled map.

    Args:
        pred: (B, 1, H, W). target: (B, 1, H, W). valid: (B, 1, H, W) or None. levels: int.

    Returns:
        scalar tensor.
    """
    pred, target, valid = _prepare(pred, target, valid, "pred")
    with _no_autocast(pred.device):
        kernel = _pyramid_kernel(pred.device)
        current, v = (pred - target) * valid, valid
        total = pred.new_zeros(())
        for i in range(levels):
            h, w = current.shape[-2:]
            # reflect padding needs at least 3 pixels; coarser levels carry nothing
            if min(h, w) < 3:
                break
            down = _gauss5(current, kernel)[:, :, ::2, ::2]
            up = torch.zeros_like(current)
            up[:, :, ::2, ::2] = down * 4  # zero insertion; x4 keeps the mean after the blur
            band = current - _gauss5(up, kernel)
            total = total + 2 ** i * (band.abs().sum() / v.sum().clamp_min(1.0))
            current, v = down, v[:, :, ::2, ::2]
        return total


# ----------------------------------------------------------------------------------------------
# The paper's two composite losses
# ----------------------------------------------------------------------------------------------

def seg_loss(logits, target, valid=None):
    """L_seg = L_BCE + L_IoU + L_SSIM on the mask logits (sigmoid inside).

    Args:
        logits: (B, 1, H, W) mask logits. target: (B, 1, H, W) binary mask in {0, 1}.
        valid: (B, 1, H, W) valid-pixel mask or None.

    Returns:
        (total, {"bce", "iou", "ssim"}): scalar tensors, total = the sum of the three.
    """
    logits, target, valid = _prepare(logits, target, valid, "logits")
    with _no_autocast(logits.device):
        prob = torch.sigmoid(logits)
        terms = {
            "bce": bce_loss(logits, target, valid),
            "iou": iou_loss(prob, target, valid),
            "ssim": ssim_loss(prob, target, valid),
        }
    # L_seg = L_BCE + L_IoU + L_SSIM
    return sum(terms.values()), terms


def matting_loss(alpha, target, valid=None):
    """L_matting = L_l1 + L_SSIM + L_Grad + L_Laplacian (Eq. 10).

    Args:
        alpha: (B, 1, H, W) predicted alpha in [0, 1]. target: (B, 1, H, W) alpha in [0, 1].
        valid: (B, 1, H, W) valid-pixel mask or None.

    Returns:
        (total, {"l1", "ssim", "grad", "laplacian"}): scalar tensors, total = the sum of the four.
    """
    alpha, target, valid = _prepare(alpha, target, valid, "alpha")
    terms = {
        "l1": l1_loss(alpha, target, valid),
        "ssim": ssim_loss(alpha, target, valid),
        "grad": grad_loss(alpha, target, valid),
        "laplacian": laplacian_loss(alpha, target, valid),
    }
    # Eq. (10): L_matting = L_l1 + L_SSIM + L_Grad + L_Laplacian
    return sum(terms.values()), terms
