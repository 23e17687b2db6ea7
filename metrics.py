"""Evaluation metrics, with the field's exact conventions (DESIGN.md, "Data and evaluation").

Segmentation (DIS5K tables, Table 1 of the paper): max F-measure, weighted F-measure, MAE, S-measure
and mean E-measure, numerically equal to PySODMetrics (the reference implementation BiRefNet and the
DIS benchmark use); DIS's human correction effort (HCE), equal to PySODMetrics' on the tests' maps;
plus the interactive-segmentation scores of HQ-SAM: mask IoU and boundary IoU.

Matting (Table 2): SAD, MSE, Grad and Conn as in the Deep Image Matting MATLAB evaluation code, on
the trimap's unknown region or on the whole image (trimap-free, prompt-based benchmarks).

Both accumulators keep each image's scores only (never the maps), so a dataset of 6000 px images
streams through in little memory. Everything that depends on the prediction only through its 256
grey levels (F, E, S, MAE) is computed from one joint (grey level, GT) histogram per image quadrant
instead of 256 threshold passes; the weighted F-measure needs the maps (distance transform +
Gaussian filter). Segmentation scores name the map they read (SEG_MAPS): the probability map for
the DIS scores, the binary mask for IoU, boundary IoU, binary MAE, FP and FN.

Conventions taken where the references are silent or ill-defined (each documented where it applies):
- every prediction is scored as the uint8 map a PNG would hold: float input is round(pred * 255);
  a prediction of another size is resized to the GT's size with PIL bilinear on that uint8 map;
- mask IoU / boundary IoU of two empty masks is 1 (HQ-SAM's code divides 0 by 0);
- an empty S-measure quadrant (GT centroid on the last row / column) contributes 0 (its weight is 0;
  PySODMetrics returns NaN there);
- MSE on an empty region (a trimap without unknown pixels) is 0.
"""

import numpy as np
from PIL import Image
from scipy import ndimage

EPS = np.spacing(1)  # MATLAB's eps; the reference code adds it to every denominator
_CHUNK_PIXELS = 1 << 21  # rows are processed in blocks of about this many pixels to bound memory


# ----------------------------------------------------------------------------------------------
# Input preparation
# ----------------------------------------------------------------------------------------------

def _check_2d(x, name):
    if not isinstance(x, np.ndarray):
        raise ValueError(f"{name} must be a numpy array, got {type(x).__name__}")
    if x.ndim != 2 or x.size == 0:
        raise ValueError(f"{name} must be a non-empty 2-D (H, W) array, got shape {x.shape}")


def prediction_to_uint8(pred, shape=None):
    """The uint8 map a saved PNG of the prediction would hold, optionally resized to `shape`.

    Args:
        pred: (h, w) numpy array, uint8 in 0..255 or float in [0, 1].
        shape: (H, W) to resize to (the GT's size), or None to keep the size.

    Returns:
        (H, W) uint8 array. Float input becomes round(pred * 255); resizing is PIL bilinear on the
        uint8 map.
    """
    _check_2d(pred, "pred")
    if pred.dtype == np.uint8:
        pred_u8 = pred
    elif np.issubdtype(pred.dtype, np.floating):
        pred = pred.astype(np.float64)
        if np.isnan(pred).any():
            raise ValueError("pred contains NaN")
        lo, hi = pred.min(), pred.max()
        if lo < 0 or hi > 1:
            raise ValueError(
                f"float pred must lie in [0, 1], got range [{lo}, {hi}] (pass uint8 for 0-255 maps)"
            )
        pred_u8 = np.round(pred * 255).astype(np.uint8)
    else:
        raise ValueError(f"pred must be uint8 (0-255) or float in [0, 1], got dtype {pred.dtype}")
    if shape is not None and pred_u8.shape != tuple(shape):
        height, width = shape
        pred_u8 = np.asarray(
            Image.fromarray(pred_u8).resize((width, height), Image.Resampling.BILINEAR)
        )
    return pred_u8


def gt_to_bool(gt):
    """Binary GT: bool as is, uint8 as gt > 128 (the DIS / HQ-SAM convention).

    Args:
        gt: (H, W) bool or uint8 numpy array.

    Returns:
        (H, W) bool array.
    """
    _check_2d(gt, "gt")
    if gt.dtype == bool:
        return gt
    if gt.dtype == np.uint8:
        return gt > 128
    raise ValueError(f"gt must be bool or uint8 (0-255), got dtype {gt.dtype}")


def _check_masks(pred, gt):
    for x, name in ((pred, "pred"), (gt, "gt")):
        _check_2d(x, name)
        if x.dtype != bool:
            raise ValueError(f"{name} must be a bool mask, got dtype {x.dtype}")
    if pred.shape != gt.shape:
        raise ValueError(f"shape mismatch: pred {pred.shape} vs gt {gt.shape}")


# ----------------------------------------------------------------------------------------------
# Interactive segmentation (HQ-SAM, COIFT): mask IoU and boundary IoU
# ----------------------------------------------------------------------------------------------

def mask_iou(pred, gt):
    """IoU = |pred & gt| / |pred | gt| of two bool masks (1.0 when both are empty).

    HQ-SAM scores (logits > 0) against (gt > 128) at the GT's resolution.

    Args:
        pred: (H, W) bool. gt: (H, W) bool.

    Returns:
        float in [0, 1].
    """
    _check_masks(pred, gt)
    union = np.count_nonzero(pred | gt)
    return 1.0 if union == 0 else np.count_nonzero(pred & gt) / union


def mask_boundary(mask, dilation_ratio=0.02):
    """Inner boundary band of a mask: mask minus its erosion, as in HQ-SAM's boundary IoU.

    d = max(1, round(dilation_ratio * sqrt(H^2 + W^2))); the erosion is a 3x3 ones kernel applied d
    times on the zero-padded mask, i.e. one (2d+1)x(2d+1) minimum filter with zeros outside the
    image (so the image border counts as boundary).

    Args:
        mask: (H, W) bool.

    Returns:
        (H, W) bool.
    """
    h, w = mask.shape
    d = max(1, int(round(dilation_ratio * np.sqrt(h * h + w * w))))
    boundary = np.zeros_like(mask)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return boundary
    # Outside the mask's bounding box everything is 0 anyway, so filtering the box alone is the
    # same.
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    eroded = ndimage.minimum_filter(mask[box], size=2 * d + 1, mode="constant", cval=0)
    boundary[box] = mask[box] & ~eroded
    return boundary


def boundary_iou(pred, gt, dilation_ratio=0.02):
    """Boundary IoU (Cheng et al. 2021, HQ-SAM's mBIoU): IoU of the two masks' boundary bands.

    Args:
        pred: (H, W) bool. gt: (H, W) bool.

    Returns:
        float in [0, 1] (1.0 when both masks are empty).
    """
    _check_masks(pred, gt)
    return mask_iou(mask_boundary(pred, dilation_ratio), mask_boundary(gt, dilation_ratio))


# ----------------------------------------------------------------------------------------------
# Salient / dichotomous segmentation: F, weighted F, MAE, S, E (PySODMetrics conventions)
# ----------------------------------------------------------------------------------------------

def _grey_levels(pred_u8):
    """Value of each grey level after pred / 255 and min-max rescaling (MATLAB
    mapminmax(im2double)).

    Returns:
        (256,) float64 lookup table; a constant map stays pred / 255.
    """
    v = np.arange(256) / 255
    lo, hi = v[pred_u8.min()], v[pred_u8.max()]
    if hi != lo:
        v = (v - lo) / (hi - lo)
    return v


def _joint_histogram(pred_u8, gt):
    """Counts of (grey level, GT) pairs: (2, 256) int64, row 0 = GT background, row 1 = GT
    foreground."""
    counts = np.zeros(512, dtype=np.int64)
    h, w = pred_u8.shape
    step = max(1, _CHUNK_PIXELS // max(w, 1))
    for r in range(0, h, step):
        code = gt[r:r + step].astype(np.uint16)
        code <<= 8
        code |= pred_u8[r:r + step]
        counts += np.bincount(code.ravel(), minlength=512)
    return counts.reshape(2, 256)


def _f_and_e_curves(hist, v):
    """F-measure (beta^2 = 0.3) and E-measure curves over the 256 thresholds t = 0..255.

    The thresholded map is p = uint8(v * 255) >= t. With TP(t), FP(t) the predicted-foreground
    counts on GT foreground / background, N pixels and G GT pixels:
        precision = TP / (TP + FP) (1 when nothing is predicted), recall = TP / max(G, 1),
        F = 1.3 precision recall / (0.3 precision + recall), 0 where the numerator is 0;
        E = sum over the 4 (pred, GT) cells of count * (align + 1)^2 / 4 / (N - 1 + EPS),
        align = 2 a b / (a^2 + b^2 + EPS), a, b the cell's demeaned prediction and GT values.

    Args:
        hist: (2, 256) joint histogram of grey levels. v: (256,) grey-level values.

    Returns:
        (f_curve, e_curve), each (256,) float64, index = threshold.
    """
    level = (v * 255).astype(np.uint8)  # truncation, as the reference does
    bg, fg = (np.bincount(level, weights=hist[i], minlength=256) for i in (0, 1))
    tp = np.cumsum(fg[::-1])[::-1]  # number of GT-foreground pixels with level >= t
    fp = np.cumsum(bg[::-1])[::-1]
    n_gt, n = hist[1].sum(), hist.sum()

    predicted = tp + fp
    precision = tp / np.where(predicted == 0, 1, predicted)
    recall = tp / max(n_gt, 1)
    numerator = 1.3 * precision * recall
    f_curve = numerator / np.where(numerator == 0, 1, 0.3 * precision + recall)

    if n_gt == 0:  # the enhanced matrix degenerates: count the predicted background
        e_sum = n - predicted
    elif n_gt == n:  # ... or the predicted foreground
        e_sum = predicted
    else:
        mean_p, mean_g = predicted / n, n_gt / n
        e_sum = 0.0
        for count, a, b in ((tp, 1 - mean_p, 1 - mean_g), (fp, 1 - mean_p, -mean_g),
                            (n_gt - tp, -mean_p, 1 - mean_g), (n - n_gt - fp, -mean_p, -mean_g)):
            align = 2 * a * b / (a * a + b * b + EPS)
            e_sum = e_sum + count * (align + 1) ** 2 / 4
    e_curve = e_sum / (n - 1 + EPS)
    return f_curve, e_curve


def _object_similarity(counts, values):
    """s(x) = 2 mean(x) / (mean(x)^2 + 1 + std(x, ddof=1) + EPS) of a region given as a
    histogram."""
    n = counts.sum()
    mean = counts @ values / n
    std = np.sqrt(counts @ (values - mean) ** 2 / (n - 1)) if n > 1 else 0.0
    return 2 * mean / (mean * mean + 1 + std + EPS)


def _quadrant_ssim(hist, v, pred64_quadrant):
    """SSIM-like score of one quadrant: 4 mx my sxy / ((mx^2 + my^2)(sx^2 + sy^2) + EPS).

    Variances use N - 1 + EPS; the score is 1 if numerator and denominator are both 0, 0 if only the
    numerator is. `pred64_quadrant` is used only to reproduce the reference's float mean in the one
    case where it decides that branch (constant prediction on a constant-GT quadrant).
    """
    bg, fg = hist
    n0, n1 = bg.sum(), fg.sum()
    n = n0 + n1
    if n == 0:
        return 0.0  # empty quadrant, weight 0 (the reference returns NaN here)
    counts = bg + fg
    mean_x = counts @ v / n
    mean_y = n1 / n
    dx = v - mean_x
    var_x = counts @ (dx * dx) / (n - 1 + EPS)
    var_y = (n1 * (1 - mean_y) ** 2 + n0 * mean_y ** 2) / (n - 1 + EPS)
    cov = (fg @ dx * (1 - mean_y) - bg @ dx * mean_y) / (n - 1 + EPS)
    if n0 == 0 or n1 == 0:
        # GT constant here: the covariance is exactly 0 and the score is 1 only if the prediction's
        # variance is exactly 0 too, which in the reference's float arithmetic means a constant
        # prediction whose np.mean equals that constant (or an all-zero prediction on background).
        levels = np.flatnonzero(counts)
        if len(levels) > 1:
            return 0.0
        if mean_y == 0 and v[levels[0]] == 0:
            return 1.0
        return 1.0 if np.mean(pred64_quadrant) == v[levels[0]] else 0.0
    numerator = 4 * mean_x * mean_y * cov
    if numerator == 0:
        return 0.0  # (the denominator is > 0 here: var_y > 0)
    return numerator / ((mean_x ** 2 + mean_y ** 2) * (var_x + var_y) + EPS)


def _gaussian_1d(size, sigma):
    """1-D factor of MATLAB's fspecial('gaussian', size, sigma), normalised to sum 1.

    The 2-D kernel is the outer product of this with itself (fspecial's eps * max cut-off never
    removes an entry for 7x7, sigma 5), so filtering separably is the same 2-D filter.
    """
    x = np.arange(size) - (size - 1) / 2
    g = np.exp(-x * x / (2 * sigma * sigma))
    return g / g.sum()


def _weighted_f(pred64, gt):
    """Weighted F-measure (Margolin et al. 2014), beta^2 = 1.

    E = |pred - gt|; Et = E with each background pixel taking E at its nearest GT pixel;
    EA = Et * Gaussian(7x7, sigma 5) (zero padding); Ew = min(E, EA) on GT, E * (2 - exp(ln 0.5 / 5
    * Dst)) on background (Dst = distance to the GT); R = 1 - mean(Ew[GT]), TPw = |GT| -
    sum(Ew[GT]), FPw = sum(Ew[~GT]), P = TPw / (TPw + FPw + EPS), Q = 2 R P / (R + P + EPS). Empty
    GT -> 0.

    Args:
        pred64: (H, W) float64 in [0, 1]. gt: (H, W) bool.

    Returns:
        float.
    """
    n_gt = np.count_nonzero(gt)
    if n_gt == 0:
        return 0.0
    h, w = gt.shape
    # Nearest GT pixel of every pixel (a GT pixel is its own nearest).
    nearest = ndimage.distance_transform_edt(~gt, return_distances=False, return_indices=True)
    error = np.where(gt, 1.0 - pred64, pred64)
    flat = nearest[0].astype(np.intp)
    flat *= w
    flat += nearest[1]
    error_t = error.ravel().take(flat).reshape(h, w)
    del flat
    g = _gaussian_1d(7, 5)
    error_a = ndimage.correlate1d(error_t, g, axis=0, mode="constant", cval=0.0)
    error_a = ndimage.correlate1d(error_a, g, axis=1, mode="constant", cval=0.0, output=error_t)
    # On GT the weight is 1 and min(E, EA) is used ("MIN_E_EA").
    sum_gt = np.sum(np.minimum(error_a, error), where=gt)
    del error_a, error_t

    # On background Ew = E * B = pred * (2 - exp(ln 0.5 / 5 * Dst)). Dst^2 is an integer and beyond
    # Dst = 266 the weight rounds to exactly 2.0, so B is a table lookup on min(Dst^2, 300^2): the
    # same float operations as computing it per pixel, done once per distinct value.
    far = 300 ** 2
    weight_of = 2 - np.exp(np.log(0.5) / 5 * np.sqrt(np.arange(far + 1, dtype=np.float64)))
    dtype = np.int32 if h * h + w * w < 2 ** 31 else np.int64
    rows, cols = np.arange(h, dtype=dtype)[:, None], np.arange(w, dtype=dtype)
    sum_bg = 0.0
    step = max(1, _CHUNK_PIXELS // w)
    for r in range(0, h, step):
        dy = nearest[0, r:r + step].astype(dtype, copy=False) - rows[r:r + step]
        dx = nearest[1, r:r + step].astype(dtype, copy=False) - cols
        dist2 = dy * dy
        dist2 += dx * dx
        np.minimum(dist2, far, out=dist2)
        sum_bg += np.sum(pred64[r:r + step] * weight_of.take(dist2), where=~gt[r:r + step])

    recall = 1 - sum_gt / n_gt
    tp_w = n_gt - sum_gt
    precision = tp_w / (tp_w + sum_bg + EPS)
    return 2 * recall * precision / (recall + precision + EPS)


def seg_scores(pred_u8, gt, mask=None):
    """All per-image segmentation scores of one (prediction, GT) pair at the same size.

    Preparation as the reference: pred / 255, min-max rescaled to [0, 1] unless constant. The
    soft-map scores (F and E curves, wF, MAE, Sm) read pred_u8; the mask scores (IoU, BIoU,
    MAE_binary, FP, FN) read `mask`, the model's own binary mask, or pred_u8 >= 128 without one.

    S-measure (alpha = 0.5): y = mean(gt); y = 0 -> 1 - mean(pred); y = 1 -> mean(pred);
    else max(0, 0.5 So + 0.5 Sr), So = y s(pred[gt]) + (1 - y) s((1 - pred)[~gt]) and Sr the
    area-weighted quadrant SSIM around the GT centroid (cy, cx) = round(mean GT coordinates) + 1.

    Args:
        pred_u8: (H, W) uint8. gt: (H, W) bool. mask: (H, W) bool or None.

    Returns:
        dict: "f_curve", "e_curve" ((256,) float64, index = threshold), "wF", "MAE", "Sm", "IoU",
        "BIoU", "MAE_binary", "FP", "FN" (fractions of the image the mask adds to / misses of the
        GT; MAE_binary = FP + FN).
    """
    _check_2d(pred_u8, "pred_u8")
    _check_2d(gt, "gt")
    if pred_u8.dtype != np.uint8 or gt.dtype != bool:
        raise ValueError(
            f"seg_scores takes a uint8 pred and a bool gt, got {pred_u8.dtype} and {gt.dtype}"
        )
    if pred_u8.shape != gt.shape:
        raise ValueError(f"shape mismatch: pred {pred_u8.shape} vs gt {gt.shape}")
    if mask is None:
        mask = pred_u8 >= 128  # pred / 255 > 0.5, i.e. logits > 0
    _check_masks(mask, gt)
    h, w = gt.shape
    n = h * w
    v = _grey_levels(pred_u8)
    pred64 = v.take(pred_u8)  # (H, W) float64, the rescaled prediction
    n_gt = np.count_nonzero(gt)

    # GT centroid from row / column counts (integer sums, so exactly the reference's mean).
    if 0 < n_gt < n:
        row_counts = np.count_nonzero(gt, axis=1)
        col_counts = np.count_nonzero(gt, axis=0)
        cy = int(np.round(row_counts @ np.arange(h) / n_gt)) + 1
        cx = int(np.round(col_counts @ np.arange(w) / n_gt)) + 1
    else:
        cy = cx = 0  # no region term: one "quadrant" is the whole image
    quadrants = [(slice(0, cy), slice(0, cx)), (slice(0, cy), slice(cx, w)),
                 (slice(cy, h), slice(0, cx)), (slice(cy, h), slice(cx, w))]
    hists = [_joint_histogram(pred_u8[q], gt[q]) for q in quadrants]
    hist = sum(hists)

    f_curve, e_curve = _f_and_e_curves(hist, v)
    mae = (hist[0] @ v + hist[1] @ (1 - v)) / n

    y = n_gt / n
    if n_gt == 0:
        s_measure = 1 - (hist[0] @ v) / n
    elif n_gt == n:
        s_measure = (hist[1] @ v) / n
    else:
        s_object = y * _object_similarity(hist[1], v) + (1 - y) * _object_similarity(hist[0], 1 - v)
        s_region = 0.0
        for (rows, cols), q_hist in zip(quadrants, hists):
            area = (rows.stop - rows.start) * (cols.stop - cols.start)
            s_region += area / n * _quadrant_ssim(q_hist, v, pred64[rows, cols])
        s_measure = max(0.0, 0.5 * s_object + 0.5 * s_region)

    fp, fn = np.count_nonzero(mask & ~gt) / n, np.count_nonzero(gt & ~mask) / n
    return {
        "f_curve": f_curve,
        "e_curve": e_curve,
        "wF": _weighted_f(pred64, gt),
        "MAE": mae,
        "Sm": s_measure,
        "IoU": mask_iou(mask, gt),
        "BIoU": boundary_iou(mask, gt),
        "MAE_binary": fp + fn,  # |mask - gt| averaged: a binary map is never rescaled
        "FP": fp,
        "FN": fn,
    }


# ----------------------------------------------------------------------------------------------
# Human correction effort (HCE; Qin et al., "Highly Accurate Dichotomous Image Segmentation",
# ECCV 2022): the number of mouse clicks a person would need to correct a mask, as PySODMetrics'
# HumanCorrectionEffortMeasure counts them (relax 5, epsilon 2). Its steps use OpenCV's contour
# following and polygon approximation and scikit-image's skeleton; each is written out here with
# numpy / scipy, and tests/test_metrics.py checks them and HCE itself against those libraries.
# ----------------------------------------------------------------------------------------------

HCE_RELAX, HCE_EPSILON = 5, 2.0
_CROSS = ndimage.generate_binary_structure(2, 1)  # disk(1): the 3x3 cross

# Zhang and Suen's thinning as scikit-image's skeletonize runs it: a pixel is removed in the first
# (second) sub-iteration when the code of its 8 neighbours (NW 1, N 2, NE 4, E 8, SE 16, S 32,
# SW 64, W 128) is in this set; these are the removable codes of scikit-image's look-up table
_THIN_FIRST = frozenset((3, 6, 7, 10, 11, 12, 14, 15, 28, 30, 31, 40, 60, 112, 120, 124, 130, 131,
                         134, 135, 143, 159, 160, 161, 193, 194, 195, 198, 199, 207, 225, 227,
                         231, 240, 241, 243))
_THIN_SECOND = frozenset((7, 10, 15, 24, 26, 28, 30, 31, 40, 56, 60, 62, 63, 96, 104, 108, 112,
                          120, 124, 126, 130, 135, 160, 176, 192, 193, 195, 199, 224, 225, 240,
                          241, 248, 249, 252))
_NEIGHBOURS = ((-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1))


def skeleton(mask):
    """The skeleton of a binary mask by Zhang-Suen thinning (scikit-image's skeletonize, 2-D): both
    sub-iterations, each removing at once every pixel whose neighbourhood code it lists, repeated
    until neither removes a pixel; outside the image counts as background."""
    s = np.pad(np.asarray(mask, bool), 1)
    h, w = s.shape
    removable = []
    for codes in (_THIN_FIRST, _THIN_SECOND):
        table = np.zeros(256, bool)
        table[list(codes)] = True
        removable.append(table)
    while True:
        removed = False
        for table in removable:
            code = np.zeros((h - 2, w - 2), np.int64)
            for bit, (dy, dx) in enumerate(_NEIGHBOURS):
                code |= s[1 + dy:h - 1 + dy, 1 + dx:w - 1 + dx].astype(np.int64) << bit
            drop = s[1:-1, 1:-1] & table[code]
            if drop.any():
                removed = True
                s[1:-1, 1:-1] &= ~drop
        if not removed:
            return s[1:-1, 1:-1]


# directions of the border follower: 0 E, 1 NE, 2 N, 3 NW, 4 W, 5 SW, 6 S, 7 SE (rows grow down)
_DX = (1, 1, 0, -1, -1, -1, 0, 1)
_DY = (0, -1, -1, -1, 0, 1, 1, 1)
_SEEN, _RIGHT_EDGE = 2, -2  # a followed pixel; one whose east neighbour is outside the region


def _follow(img, x0, y0, hole):
    """Suzuki and Abe's border following (1985) from (x0, y0), as OpenCV runs it: the border's
    pixels in order; followed pixels are marked in img (a padded int8 copy of the mask)."""
    s = end = 0 if hole else 4
    while True:  # the first neighbour, searched clockwise from the start's outside
        s = (s - 1) & 7
        if img[y0 + _DY[s], x0 + _DX[s]] != 0 or s == end:
            break
    if img[y0 + _DY[s], x0 + _DX[s]] == 0:  # a single pixel
        img[y0, x0] = _RIGHT_EDGE
        return [(x0, y0)]
    x1, y1 = x0 + _DX[s], y0 + _DY[s]
    x3, y3, points = x0, y0, []
    while True:
        end = s
        while True:  # counter-clockwise from the previous pixel to the next one in the region
            s += 1
            x4, y4 = x3 + _DX[s & 7], y3 + _DY[s & 7]
            if img[y4, x4] != 0:
                break
        s &= 7
        if 1 <= s <= end:  # the east neighbour was examined and lies outside
            img[y3, x3] = _RIGHT_EDGE
        elif img[y3, x3] == 1:
            img[y3, x3] = _SEEN
        points.append((x3, y3))
        if (x4, y4) == (x0, y0) and (x3, y3) == (x1, y1):
            return points
        x3, y3 = x4, y4
        s = (s + 4) & 7


def contours(mask):
    """Every border of a binary mask (8-connected regions, 4-connected holes), each a list of
    (x, y) pixels, in the order and from the start OpenCV's findContours gives them (RETR_TREE,
    CHAIN_APPROX_NONE): the raster scan finds outer borders (a 0 then a 1) and hole borders (a
    region pixel not yet marked as a right edge, then a 0); the list is the tree of borders
    (a hole's parent: its region's outer border; a region's: the hole around it) walked depth
    first, each level in the reverse order of discovery."""
    mask = np.asarray(mask, bool)
    img = np.pad(mask, 1).astype(np.int8)
    found = []  # (points, is hole, start)
    nonzero = img != 0
    rows, cols = np.nonzero(nonzero[:, 1:-1] != nonzero[:, :-2])  # where 0 / not 0 changes
    for y, x in zip(rows.tolist(), (cols + 1).tolist()):
        prev, p = img[y, x - 1], img[y, x]
        if prev == 0 and p == 1:
            found.append((_follow(img, x, y, False), False, (x, y)))
        elif p == 0 and prev >= 1:
            found.append((_follow(img, x - 1, y, True), True, (x - 1, y)))
    padded = np.pad(mask, 1)
    regions, _ = ndimage.label(padded, np.ones((3, 3)))
    holes, _ = ndimage.label(~padded, _CROSS)
    outer_of = {regions[y, x]: i for i, (_, hole, (x, y)) in enumerate(found) if not hole}
    hole_of = {holes[y, x + 1]: i for i, (_, hole, (x, y)) in enumerate(found) if hole}
    children = {}
    for i, (_, hole, (x, y)) in enumerate(found):
        if hole:
            parent = outer_of[regions[y, x]]
        else:
            around = holes[y, x - 1]
            parent = -1 if around == holes[0, 0] else hole_of[around]
        children.setdefault(parent, []).insert(0, i)
    order, stack = [], list(reversed(children.get(-1, [])))
    while stack:
        i = stack.pop()
        order.append(i)
        stack.extend(reversed(children.get(i, [])))
    return [[(x - 1, y - 1) for x, y in found[i][0]] for i in order]


def _segment_distance2(p, a, b):
    """The squared distance from p to the segment a-b."""
    dx, dy = b[0] - a[0], b[1] - a[1]
    length2 = dx * dx + dy * dy
    t = (p[0] - a[0]) * dx + (p[1] - a[1]) * dy
    if length2 == 0 or t <= 0:
        return (p[0] - a[0]) ** 2 + (p[1] - a[1]) ** 2
    if t >= length2:
        return (p[0] - b[0]) ** 2 + (p[1] - b[1]) ** 2
    cross = (p[1] - a[1]) * dx - (p[0] - a[0]) * dy
    return cross * cross / length2


def polygon_points(points, epsilon):
    """How many vertices the Ramer-Douglas-Peucker approximation of an open polyline keeps, as
    OpenCV's approxPolyDP (closed=False) keeps them: a stretch is split at its point farthest
    from the segment joining its ends (the first of equals) while that distance exceeds epsilon;
    then, once along the result, a vertex nearly on the line of its neighbours (squared distance
    at most epsilon^2 / 2 of the squared span, the span neither horizontal nor vertical, the
    vertex between them) is dropped with the next one kept. A polyline whose ends coincide is
    approximated as closed: only single points occur here (hce's boundaries are distinct
    pixels), which keep 1."""
    n = len(points)
    if n <= 1:
        return n
    if points[0] == points[-1]:
        raise ValueError("polygon_points: a polyline whose ends coincide is closed")
    eps2 = epsilon * epsilon
    kept, stack = [], [(0, n - 1)]
    while stack:
        a, b = stack.pop()
        far, split = 0.0, None
        for k in range(a + 1, b):
            d = _segment_distance2(points[k], points[a], points[b])
            if d > far:
                far, split = d, k
        if split is None or far <= eps2:
            kept.append(points[a])
        else:
            stack += [(split, b), (a, split)]
    kept.append(points[-1])
    count = total = len(kept)  # the clean-up pass over the approximation, in place
    if count < 3:
        return count
    read = 0

    def next_point():
        nonlocal read
        point = kept[read]
        read = read + 1 if read + 1 < count else 0
        return point

    start = next_point()
    write = read
    pt = next_point()
    i = 1
    while i < count - 1 and total > 2:
        end = next_point()
        dx, dy = end[0] - start[0], end[1] - start[1]
        dist = abs((pt[0] - start[0]) * dy - (pt[1] - start[1]) * dx)
        between = (pt[0] - start[0]) * (end[0] - pt[0]) + (pt[1] - start[1]) * (end[1] - pt[1])
        if dist * dist <= 0.5 * eps2 * (dx * dx + dy * dy) and dx != 0 and dy != 0 \
                and between >= 0:
            total -= 1
            kept[write] = start = end
            write = write + 1 if write + 1 < count else 0
            pt = next_point()
            i += 2
            continue
        kept[write] = start = pt
        write = write + 1 if write + 1 < count else 0
        pt = end
        i += 1
    return total


def _boundaries_to_correct(region, condition):
    """The parts of the region's borders a person must draw (PySODMetrics'
    filter_conditional_boundary): each border (contours) cut where a pixel is outside `condition`
    dilated by the 3x3 cross or was kept already; the last piece joined with the reversed first
    one when their ends are 8-neighbours. Returns the pieces and how many 8-connected parts of
    the region keep no border pixel (each corrected with one click)."""
    condition = ndimage.binary_dilation(condition, _CROSS)
    labels, parts = ndimage.label(region, np.ones((3, 3)))
    independent = np.ones(parts + 1, bool)
    independent[0] = False
    visited = np.zeros(region.shape, bool)
    pieces = []
    for border in contours(region):
        cut, piece = [], []
        for x, y in border:
            if not condition[y, x] or visited[y, x]:
                if piece:
                    cut.append(piece)
                    piece = []
                continue
            piece.append((x, y))
            visited[y, x] = True
            independent[labels[y, x]] = False
        if piece:
            cut.append(piece)
        if len(cut) > 1:
            (fx, fy), (lx, ly) = cut[0][0], cut[-1][-1]
            if max(abs(fx - lx), abs(fy - ly)) == 1:
                cut[-1].extend(cut[0][::-1])
                del cut[0]
        pieces += cut
    return pieces, int(independent.sum())


def human_correction_effort(mask, gt, relax=HCE_RELAX, epsilon=HCE_EPSILON):
    """HCE of one binary mask (Qin et al. 2022; PySODMetrics' HumanCorrectionEffortMeasure): the
    polygon vertices needed to redraw the false positives and the false negatives a person would
    correct, plus one click per part of them with nothing to redraw.

    The union of mask and GT eroded `relax` times by the 3x3 cross (outside the image counts as
    inside) keeps the errors away from its edge; the false positives FP' are those errors grown
    back `relax` times outside the GT, the false negatives FN' likewise outside the mask, plus
    the GT's skeleton where the mask misses it (thin structures must be drawn whatever their
    width). FP' borders are drawn where they touch TP or FN', FN' borders where they touch
    neither TP, FP' nor FN' (_boundaries_to_correct); each piece costs its approximating polygon's
    vertices (polygon_points, epsilon).

    Args:
        mask, gt: (H, W) bool.

    Returns:
        int.
    """
    mask, gt = np.asarray(mask, bool), np.asarray(gt, bool)
    if mask.shape != gt.shape:
        raise ValueError(f"human_correction_effort: mask {mask.shape} and GT {gt.shape} differ")
    gt_skeleton = skeleton(gt)
    tp = mask & gt
    fp, fn = mask & ~gt, gt & ~mask
    union = ndimage.binary_erosion(mask | gt, _CROSS, iterations=relax, border_value=1)
    fp_ = fp & union
    for _ in range(relax):
        fp_ = ndimage.binary_dilation(fp_, _CROSS) & ~gt
    fp_ &= fp
    fn_ = fn & union
    for _ in range(relax):
        fn_ = ndimage.binary_dilation(fn_, _CROSS) & ~mask
    fn_ = (fn & fn_) | (gt_skeleton & ~tp)
    pieces_fp, parts_fp = _boundaries_to_correct(fp_, tp | fn_)
    pieces_fn, parts_fn = _boundaries_to_correct(fn_, ~(tp | fp_ | fn_))
    vertices = sum(polygon_points(piece, epsilon) for piece in pieces_fp + pieces_fn)
    return int(vertices + parts_fp + parts_fn)


# The map each segmentation score reads (SegMetrics): the probability map or the binary mask; and
# the column name that says so, in every table where two models stand side by side
SEG_MAPS = {"maxF": "soft", "wF": "soft", "MAE": "soft", "Sm": "soft", "meanEm": "soft",
            "mIoU": "binary", "mBIoU": "binary", "MAE_binary": "binary", "FP": "binary",
            "FN": "binary", "HCE": "binary"}


def column(key):
    """A score's name with the map it reads: "maxF (soft)", "MAE (binary)"; others unchanged."""
    if key not in SEG_MAPS:
        return key
    return f"{key.removesuffix('_binary')} ({SEG_MAPS[key]})"


class SegMetrics:
    """Dataset-level segmentation scores: maxF, wF, MAE, Sm, meanEm (DIS5K tables) from the
    probability map, and mIoU, mBIoU (HQ-SAM), MAE_binary, FP, FN from the binary mask (SEG_MAPS).

    Per image: the prediction is resized to the GT's size (PIL bilinear on the uint8 map), scored,
    and only its scores are kept (a 256-bin F curve and scalars; per_image()).

    maxF = max over t of the image-averaged F curve; meanEm = mean over t of the image-averaged E
    curve; the other scores are image averages. Without a mask, the mask is the prediction at
    pred / 255 > 0.5. With hce=True (the DIS splits, where the field reports it) also the mean
    human correction effort of the masks (human_correction_effort), "HCE".
    """

    KEYS = ("wF", "MAE", "Sm", "meanEm", "IoU", "BIoU", "MAE_binary", "FP", "FN")

    def __init__(self, hce: bool = False):
        self.images = []  # per image: its F curve and its KEYS (and HCE)
        self.hce = hce

    def update(self, pred, gt, mask=None):
        """Adds one image.

        Args:
            pred: (h, w) uint8 0-255 or float in [0, 1], any size (resized to the GT's size).
            gt: (H, W) bool, or uint8 binarised as gt > 128.
            mask: (H, W) bool, the model's binary mask at the GT's size, or None.
        """
        gt = gt_to_bool(gt)
        pred_u8 = prediction_to_uint8(pred, gt.shape)
        scores = seg_scores(pred_u8, gt, mask)
        scores["meanEm"] = float(np.mean(scores["e_curve"]))  # the mean over t commutes
        image = {"f_curve": scores["f_curve"], **{k: float(scores[k]) for k in self.KEYS}}
        if self.hce:
            image["HCE"] = float(human_correction_effort(
                pred_u8 >= 128 if mask is None else mask, gt))
        self.images.append(image)

    @property
    def n(self):
        return len(self.images)

    def per_image(self):
        """Every image's scores, one list per key in results()' names (maxF: the images' F curves,
        256 thresholds each, whose mean's maximum is the dataset's maxF; the others: the values
        whose mean is the dataset's)."""
        names = {"IoU": "mIoU", "BIoU": "mBIoU"}
        out = {"maxF": [image["f_curve"].tolist() for image in self.images]}
        keys = self.KEYS + (("HCE",) if self.hce else ())
        out.update({names.get(k, k): [image[k] for image in self.images] for k in keys})
        return out

    def results(self):
        """Returns:
            dict of floats: maxF, wF, MAE, Sm, meanEm, mIoU, mBIoU, MAE_binary, FP, FN, and n (the
            number of images).
        """
        if self.n == 0:
            raise ValueError("SegMetrics.results() called before any update()")
        per_image = self.per_image()
        out = {"maxF": float(np.max(np.mean(per_image.pop("maxF"), axis=0)))}
        out.update({k: float(np.mean(v)) for k, v in per_image.items()})
        order = ("maxF", "wF", "MAE", "Sm", "meanEm", "mIoU", "mBIoU", "MAE_binary", "FP", "FN")
        order += ("HCE",) if self.hce else ()
        return {**{k: out[k] for k in order}, "n": self.n}


# ----------------------------------------------------------------------------------------------
# Matting: SAD, MSE, Grad, Conn (Deep Image Matting evaluation code)
# ----------------------------------------------------------------------------------------------

def alpha_to_float(alpha, name="alpha"):
    """Alpha matte as float64 in [0, 1]: uint8 / 255, float checked for NaN and range.

    Args:
        alpha: (H, W) uint8 0-255 or float in [0, 1].

    Returns:
        (H, W) float64.
    """
    _check_2d(alpha, name)
    if alpha.dtype == np.uint8:
        return alpha / 255
    if not np.issubdtype(alpha.dtype, np.floating):
        raise ValueError(
            f"{name} must be uint8 (0-255) or float in [0, 1], got dtype {alpha.dtype}"
        )
    alpha = alpha.astype(np.float64)
    if np.isnan(alpha).any():
        raise ValueError(f"{name} contains NaN")
    lo, hi = alpha.min(), alpha.max()
    if lo < 0 or hi > 1:
        raise ValueError(
            f"float {name} must lie in [0, 1], got range [{lo}, {hi}] (pass uint8 for 0-255 maps)"
        )
    return alpha


def _gaussian_derivative_filters(sigma=1.4, epsilon=1e-2):
    """Separable factors of DIM's gaussgradient kernel: hx(i, j) = G(u_i) dG(u_j) / ||G dG||_2.

    halfsize = ceil(sigma sqrt(-2 ln(sqrt(2 pi) sigma epsilon))) = 4 for sigma 1.4, a 9x9 kernel;
    G(u) = exp(-u^2 / (2 sigma^2)) / (sigma sqrt(2 pi)), dG(u) = -u G(u) / sigma^2. The L2 norm of
    an outer product is the product of the norms, so each factor is normalised on its own.
    """
    half = int(np.ceil(sigma * np.sqrt(-2 * np.log(np.sqrt(2 * np.pi) * sigma * epsilon))))
    u = np.arange(-half, half + 1, dtype=np.float64)
    g = np.exp(-u * u / (2 * sigma * sigma)) / (sigma * np.sqrt(2 * np.pi))
    dg = -u * g / sigma ** 2
    return g / np.linalg.norm(g), dg / np.linalg.norm(dg)


def _gradient_magnitude(alpha):
    """|grad| of mat2gray(alpha) with first-order Gaussian derivative filters (true convolution,
    replicate border). A constant map has zero gradient whatever its scaling."""
    lo, hi = alpha.min(), alpha.max()
    x = (alpha - lo) / (hi - lo) if hi > lo else np.zeros_like(alpha)
    g, dg = _gaussian_derivative_filters()
    gx = ndimage.convolve1d(
        ndimage.convolve1d(x, g, axis=0, mode="nearest"), dg, axis=1, mode="nearest"
    )
    gy = ndimage.convolve1d(
        ndimage.convolve1d(x, dg, axis=0, mode="nearest"), g, axis=1, mode="nearest"
    )
    return np.sqrt(gx * gx + gy * gy)


def _largest_component(mask):
    """Largest 4-connected component of `mask` (bool), never the background.

    Ties go to the first component in column-major scan order, as MATLAB's bwconncomp + max would
    pick; labelling the transpose makes scipy number components in that order.
    """
    labels, count = ndimage.label(mask.T)  # 4-connectivity is scipy's default structure in 2-D
    if count == 0:
        return np.zeros_like(mask)
    sizes = np.bincount(labels.ravel())[1:]  # drop label 0, the background
    return (labels == 1 + int(np.argmax(sizes))).T


def _connectivity_phi(pred, gt, step=0.1):
    """phi maps of the connectivity error (Rhemann et al. 2009, DIM's implementation).

    For t = step .. 1: Omega_t = largest 4-connected component of (pred >= t) & (gt >= t); l(x) =
    the threshold just before the first t with x outside Omega_t (1 if x is always inside); d =
    alpha - l; phi = 1 - d * (d >= 0.15).

    Returns:
        (phi_pred, phi_gt), each (H, W) float64.
    """
    n_steps = int(round(1 / step))
    # k / 10 exactly as MATLAB's 0:0.1:1 (6 * 0.1 != 0.6)
    thresholds = np.arange(n_steps + 1) / n_steps
    level = np.full(pred.shape, -1.0)
    for previous, t in zip(thresholds[:-1], thresholds[1:]):
        omega = _largest_component((pred >= t) & (gt >= t))
        level[(level == -1) & ~omega] = previous
    level[level == -1] = 1.0
    phis = []
    for alpha in (pred, gt):
        d = alpha - level
        phis.append(1 - d * (d >= 0.15))
    return phis[0], phis[1]


def matting_scores(pred, gt, region=None):
    """Per-image matting errors in the units papers print, on `region` (bool mask) or the whole
    image.

    SAD = sum |pred - gt| / 1000; MSE = mean (pred - gt)^2 * 1e3 (0 on an empty region);
    Grad = sum (|grad pred| - |grad gt|)^2 / 1000; Conn = sum |phi_pred - phi_gt| / 1000,
    alphas on the [0, 1] scale (DIM divides 0-255 maps by 255).

    Args:
        pred, gt: (H, W) float64 in [0, 1]. region: (H, W) bool or None.

    Returns:
        dict with "SAD", "MSE", "Grad", "Conn".
    """
    if region is None:
        region = np.ones(gt.shape, dtype=bool)
    diff = pred - gt
    n_region = np.count_nonzero(region)
    grad_diff = _gradient_magnitude(pred) - _gradient_magnitude(gt)
    phi_pred, phi_gt = _connectivity_phi(pred, gt)
    return {
        "SAD": np.sum(np.abs(diff), where=region) / 1000,
        "MSE": np.sum(diff * diff, where=region) / n_region * 1e3 if n_region else 0.0,
        "Grad": np.sum(grad_diff * grad_diff, where=region) / 1000,
        "Conn": np.sum(np.abs(phi_pred - phi_gt), where=region) / 1000,
    }


class MattingMetrics:
    """Dataset-level SAD, MSE (x 1e3), Grad, Conn (SAD, Grad, Conn / 1000): means over images.

    With a trimap, only its unknown region (trimap == 128) is scored (Composition-1K,
    Distinctions-646); without, the whole image (trimap-free benchmarks: AM-2K, P3M-500, AIM-500,
    RefMatte-RW100). One accumulator holds one region kind; mixing them raises ValueError.
    """

    REGIONS = {True: "unknown (trimap == 128)", False: "whole image"}

    def __init__(self):
        self.region = None
        self.images = []  # per image: SAD, MSE, Grad, Conn

    def update(self, pred_alpha, gt_alpha, trimap=None):
        """Adds one image.

        Args:
            pred_alpha, gt_alpha: (H, W) uint8 0-255 or float in [0, 1], same size.
            trimap: (H, W) uint8 with 0 / 128 / 255, or None to score the whole image.
        """
        pred = alpha_to_float(pred_alpha, "pred_alpha")
        gt = alpha_to_float(gt_alpha, "gt_alpha")
        if pred.shape != gt.shape:
            raise ValueError(f"shape mismatch: pred_alpha {pred.shape} vs gt_alpha {gt.shape}")
        region = None
        if trimap is not None:
            _check_2d(trimap, "trimap")
            if trimap.dtype != np.uint8:
                raise ValueError(f"trimap must be uint8 (0 / 128 / 255), got dtype {trimap.dtype}")
            if trimap.shape != gt.shape:
                raise ValueError(f"shape mismatch: trimap {trimap.shape} vs gt_alpha {gt.shape}")
            region = trimap == 128
        kind = self.REGIONS[trimap is not None]
        if self.region is not None and kind != self.region:
            raise ValueError(
                f"region mismatch: this accumulator scores the {self.region}, got an image for the "
                f"{kind}"
            )
        self.region = kind
        self.images.append({k: float(v) for k, v in matting_scores(pred, gt, region).items()})

    @property
    def n(self):
        return len(self.images)

    def per_image(self):
        """Every image's SAD, MSE, Grad and Conn: {key: [value per image]}."""
        return {k: [image[k] for image in self.images] for k in ("SAD", "MSE", "Grad", "Conn")}

    def results(self):
        """Returns:
            dict: SAD, MSE, Grad, Conn (floats, paper units), region (str), n (int).
        """
        if self.n == 0:
            raise ValueError("MattingMetrics.results() called before any update()")
        out = {k: float(np.mean(v)) for k, v in self.per_image().items()}
        out.update(region=self.region, n=self.n)
        return out
