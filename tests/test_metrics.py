"""metrics.py against the field's reference implementations and hand-computed cases.

Segmentation: equal to PySODMetrics (the oracle, `py_sod_metrics`) to 1e-6 relative on generated
GT / prediction pairs; IoU / boundary IoU equal to HQ-SAM's OpenCV procedure. Matting: small cases
computed by hand and properties of the definitions.
"""

import warnings

import cv2
import numpy as np
import py_sod_metrics
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import ndimage

import metrics
from metrics import (
    MattingMetrics,
    SegMetrics,
    boundary_iou,
    mask_iou,
    matting_scores,
    prediction_to_uint8,
)

RTOL, ATOL = 1e-6, 1e-12  # ATOL only for scores that are exactly 0


# ----------------------------------------------------------------------------------------------
# Generators of GT / prediction pairs
# ----------------------------------------------------------------------------------------------

GT_KINDS = ["blobs", "lines", "mesh", "holes", "empty", "full", "noise", "pixel"]
PRED_KINDS = ["noisy_gt", "noise", "constant", "binary", "float", "blur_only", "inverted"]


def make_gt(kind, h, w, rng):
    """(H, W) uint8 0 / 255 GT of the given kind."""
    yy, xx = np.mgrid[:h, :w]
    gt = np.zeros((h, w), bool)
    if kind in ("blobs", "holes"):
        for _ in range(rng.integers(1, 4)):
            cy, cx = rng.uniform(0, h), rng.uniform(0, w)
            ry, rx = rng.uniform(1, h / 2 + 1), rng.uniform(1, w / 2 + 1)
            gt |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
        if kind == "holes":
            cy, cx = rng.uniform(0, h), rng.uniform(0, w)
            gt &= ((yy - cy) / (h / 5 + 1)) ** 2 + ((xx - cx) / (w / 5 + 1)) ** 2 >= 1
    elif kind == "lines":  # thin horizontal, vertical and diagonal lines
        gt[rng.integers(0, h), :] = True
        gt[:, rng.integers(0, w)] = True
        gt |= (yy - xx) == rng.integers(-h, w)
    elif kind == "mesh":
        gt[::rng.integers(2, 6), :] = True
        gt[:, ::rng.integers(2, 6)] = True
    elif kind == "full":
        gt[:] = True
    elif kind == "noise":
        gt = rng.random((h, w)) < rng.uniform(0.05, 0.95)
    elif kind == "pixel":
        gt[rng.integers(0, h), rng.integers(0, w)] = True
    return gt.astype(np.uint8) * 255


def make_pred(kind, gt_u8, shape, rng):
    """Prediction of the given kind at `shape`: uint8 0-255, or float in [0, 1] for kind "float"."""
    h, w = shape
    base = np.asarray(cv2.resize(gt_u8, (w, h), interpolation=cv2.INTER_NEAREST), dtype=np.float64)
    if kind == "noisy_gt":
        p = ndimage.gaussian_filter(base, rng.uniform(0.5, 3)) + rng.normal(0, 30, (h, w))
    elif kind == "noise":
        p = rng.uniform(0, 255, (h, w))
    elif kind == "constant":
        p = np.full((h, w), float(rng.choice([0, 1, 77, 128, 254, 255])))
    elif kind == "binary":
        p = np.where(rng.random((h, w)) < 0.1, 255 - base, base)
    elif kind == "blur_only":
        p = ndimage.gaussian_filter(base, 2.0)
    elif kind == "inverted":
        p = 255 - base
    else:  # "float": a probability map, not quantised
        return np.clip(ndimage.gaussian_filter(base / 255, 1.5) + rng.normal(0, 0.1, (h, w)), 0, 1)
    return np.clip(np.round(p), 0, 255).astype(np.uint8)


@st.composite
def pairs(draw, max_side=40):
    """One (pred, gt) pair: pred uint8 or float, maybe at another size than the GT; gt uint8 or
    bool."""
    h, w = draw(st.integers(2, max_side)), draw(st.integers(2, max_side))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    gt = make_gt(draw(st.sampled_from(GT_KINDS)), h, w, rng)
    shape = (h, w)
    if draw(st.booleans()):  # prediction at another size
        shape = (draw(st.integers(2, max_side)), draw(st.integers(2, max_side)))
    pred = make_pred(draw(st.sampled_from(PRED_KINDS)), gt, shape, rng)
    if draw(st.booleans()):
        gt = gt > 128
    return pred, gt


# ----------------------------------------------------------------------------------------------
# The oracle
# ----------------------------------------------------------------------------------------------

def pysod_results(prepared):
    """PySODMetrics' five metrics over a list of (pred uint8, gt uint8) pairs at the same size."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Fmeasure's deprecation notice, empty-slice means
        fm, wfm, sm, em, mae = (
            py_sod_metrics.Fmeasure(),
            py_sod_metrics.WeightedFmeasure(),
            py_sod_metrics.Smeasure(),
            py_sod_metrics.Emeasure(),
            py_sod_metrics.MAE(),
        )
        for pred, gt in prepared:
            for m in (fm, wfm, sm, em, mae):
                m.step(pred, gt)
        f_curve = fm.get_results()["fm"]["curve"]
        e_curve = em.get_results()["em"]["curve"]
        return {
            "maxF": f_curve.max(), "wF": wfm.get_results()["wfm"], "MAE": mae.get_results()["mae"],
            "Sm": sm.get_results()["sm"], "meanEm": e_curve.mean(),
            # the oracle orders thresholds 255 .. 0
            "f_curve": f_curve[::-1], "e_curve": e_curve[::-1],
            "sms": np.array(sm.sms, dtype=np.float64),
        }


def prepare(pred, gt):
    """What SegMetrics scores, as the oracle's uint8 inputs: the pred resized to the GT, gt as 0 /
    255."""
    gt_u8 = (gt.astype(np.uint8) * 255) if gt.dtype == bool else gt
    return prediction_to_uint8(pred, gt_u8.shape), gt_u8


def empty_quadrant(gt_u8):
    """True where the S-measure's GT centroid puts a quadrant outside the image (the oracle gives
    NaN)."""
    gt = gt_u8 > 128
    if not 0 < gt.sum() < gt.size:
        return False
    cy, cx = np.round(np.argwhere(gt).mean(axis=0)).astype(int) + 1
    return cy == gt.shape[0] or cx == gt.shape[1]


# ----------------------------------------------------------------------------------------------
# Segmentation: equality with PySODMetrics
# ----------------------------------------------------------------------------------------------

@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pair=pairs())
def test_single_image_equals_pysodmetrics(pair):
    pred, gt = pair
    ours = SegMetrics()
    ours.update(pred, gt)
    got = ours.results()
    prepared = prepare(pred, gt)
    ref = pysod_results([prepared])
    for key in ("maxF", "wF", "MAE", "meanEm"):
        assert got[key] == pytest.approx(ref[key], rel=RTOL, abs=ATOL), key
    if empty_quadrant(prepared[1]):
        assert np.isnan(ref["Sm"]) and np.isfinite(got["Sm"])  # our documented convention
    else:
        assert got["Sm"] == pytest.approx(ref["Sm"], rel=RTOL, abs=ATOL)
    scores = metrics.seg_scores(prepared[0], prepared[1] > 128)
    np.testing.assert_allclose(scores["f_curve"], ref["f_curve"], rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(scores["e_curve"], ref["e_curve"], rtol=RTOL, atol=ATOL)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.lists(pairs(max_side=24), min_size=2, max_size=4))
def test_dataset_average_equals_pysodmetrics(batch):
    """Curves are averaged over images before max / mean, scalars are image means."""
    batch = [(p, g) for p, g in batch if not empty_quadrant(prepare(p, g)[1])]
    if not batch:
        return
    ours = SegMetrics()
    for pred, gt in batch:
        ours.update(pred, gt)
    got = ours.results()
    ref = pysod_results([prepare(p, g) for p, g in batch])
    assert got["n"] == len(batch)
    for key in ("maxF", "wF", "MAE", "Sm", "meanEm"):
        assert got[key] == pytest.approx(ref[key], rel=RTOL, abs=ATOL), key


@pytest.mark.parametrize("dtype", ["uint8", "float"])
def test_large_blob_equals_pysodmetrics(dtype):
    """A realistic map, big enough for the row-block processing to take several blocks."""
    rng = np.random.default_rng(3)
    h, w = 1200, 1900
    gt = make_gt("holes", h, w, rng)
    pred = make_pred("noisy_gt", gt, (h, w), rng)
    if dtype == "float":
        pred = pred / 255.0
    got = SegMetrics()
    got.update(pred, gt)
    got = got.results()
    ref = pysod_results([prepare(pred, gt)])
    for key in ("maxF", "wF", "MAE", "Sm", "meanEm"):
        assert got[key] == pytest.approx(ref[key], rel=RTOL), key


def test_resizing_is_pil_bilinear_on_uint8():
    from PIL import Image
    rng = np.random.default_rng(0)
    pred = rng.integers(0, 256, (30, 50), dtype=np.uint8)
    expected = np.asarray(Image.fromarray(pred).resize((70, 20), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(prediction_to_uint8(pred, (20, 70)), expected)
    # float maps back exactly
    np.testing.assert_array_equal(prediction_to_uint8(pred / 255.0), pred)


def test_perfect_prediction_scores():
    gt = make_gt("blobs", 40, 60, np.random.default_rng(1))
    m = SegMetrics()
    m.update(gt.copy(), gt)
    r = m.results()
    assert r["maxF"] == pytest.approx(1) and r["wF"] == pytest.approx(1) and r["MAE"] == 0
    assert r["Sm"] == pytest.approx(1) and r["mIoU"] == 1 and r["mBIoU"] == 1
    # Every pixel scores 1 in the enhanced matrix at every threshold but t = 0 (where the whole
    # image counts as predicted foreground); the sum is divided by N - 1.
    e_curve = metrics.seg_scores(gt, gt > 128)["e_curve"]
    np.testing.assert_allclose(e_curve[1:], gt.size / (gt.size - 1))
    assert e_curve[0] < 1


# ----------------------------------------------------------------------------------------------
# Interactive segmentation: mask IoU, boundary IoU (HQ-SAM)
# ----------------------------------------------------------------------------------------------

def hqsam_boundary(mask):
    """HQ-SAM's mask_to_boundary with OpenCV: pad 1 zero, erode with 3x3 ones d times, crop,
    subtract."""
    h, w = mask.shape
    d = max(1, int(round(0.02 * np.sqrt(h ** 2 + w ** 2))))
    padded = cv2.copyMakeBorder(mask.astype(np.uint8), 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    eroded = cv2.erode(padded, np.ones((3, 3), np.uint8), iterations=d)[1:h + 1, 1:w + 1]
    return (mask.astype(np.uint8) - eroded) > 0


def test_mask_iou_by_hand():
    pred = np.array([[1, 1, 0], [0, 1, 0]], bool)
    gt = np.array([[1, 0, 0], [0, 1, 1]], bool)
    assert mask_iou(pred, gt) == pytest.approx(2 / 4)  # intersection 2, union 4
    assert mask_iou(np.zeros((2, 3), bool), np.zeros((2, 3), bool)) == 1.0


@settings(max_examples=40, deadline=None)
@given(h=st.integers(1, 120), w=st.integers(1, 120), seed=st.integers(0, 2 ** 32 - 1),
       kind=st.sampled_from(["blobs", "lines", "mesh", "holes", "noise", "full", "empty"]))
def test_boundary_iou_equals_hqsam_opencv(h, w, seed, kind):
    rng = np.random.default_rng(seed)
    gt = make_gt(kind, h, w, rng) > 128
    pred = ndimage.binary_dilation(gt, iterations=int(rng.integers(0, 3))) ^ (
        rng.random((h, w)) < 0.02
    )
    ref_gt, ref_pred = hqsam_boundary(gt), hqsam_boundary(pred)
    np.testing.assert_array_equal(metrics.mask_boundary(gt), ref_gt)
    union = (ref_gt | ref_pred).sum()
    expected = (ref_gt & ref_pred).sum() / union if union else 1.0
    assert boundary_iou(pred, gt) == pytest.approx(expected, abs=1e-12)


def test_miou_thresholds_raw_prediction_at_half():
    gt = np.zeros((4, 4), np.uint8)
    gt[:2] = 255
    pred = np.full((4, 4), 127, np.uint8)
    pred[:2, :2] = 128  # 128 / 255 > 0.5 > 127 / 255
    m = SegMetrics()
    m.update(pred, gt)
    assert m.results()["mIoU"] == pytest.approx(4 / 8)


def test_each_score_reads_the_map_it_names():
    """A probability map and a mask that disagree: the soft scores are those of the map alone, the
    mask scores those of the mask alone (each by hand)."""
    gt = np.zeros((10, 10), np.uint8)
    gt[:, :5] = 255
    soft = np.full((10, 10), 51, np.uint8)  # 0.2 on the background, 0.6 on the GT, one 0
    soft[:, :5] = 153
    soft[9, 9] = 0
    mask = np.zeros((10, 10), bool)  # its own mask: the GT shifted right by one column
    mask[:, 1:6] = True
    with_mask, alone = SegMetrics(), SegMetrics()
    with_mask.update(soft, gt, mask)
    alone.update(soft, gt)
    got, soft_only = with_mask.results(), alone.results()
    for key in ("maxF", "wF", "MAE", "Sm", "meanEm"):
        assert metrics.SEG_MAPS[key] == "soft"
        assert got[key] == soft_only[key]
    # min-max rescaled: GT 1, background 51 / 153 = 1/3 except the one 0
    assert got["MAE"] == pytest.approx(49 * (1 / 3) / 100)
    # the mask: 40 px hit, 10 added, 10 missed; the soft map at 0.5 would be the GT itself
    assert soft_only["mIoU"] == 1.0 and soft_only["MAE_binary"] == 0.0
    assert got["mIoU"] == pytest.approx(40 / 60)
    assert got["FP"] == pytest.approx(0.1) and got["FN"] == pytest.approx(0.1)
    assert got["MAE_binary"] == pytest.approx(0.2)  # = mean |mask - gt|
    assert got["mBIoU"] == boundary_iou(mask, gt > 128) < 1
    for key in ("mIoU", "mBIoU", "MAE_binary", "FP", "FN"):
        assert metrics.SEG_MAPS[key] == "binary"
    assert [metrics.column(k) for k in ("maxF", "MAE", "MAE_binary", "FP", "SAD")] == [
        "maxF (soft)", "MAE (soft)", "MAE (binary)", "FP (binary)", "SAD"]
    assert set(metrics.SEG_MAPS) == set(got) - {"n"} | {"HCE"}  # HCE: SegMetrics(hce=True)


def test_per_image_scores_average_to_the_results():
    rng = np.random.default_rng(3)
    m = SegMetrics()
    for _ in range(3):
        gt = rng.random((12, 9)) > 0.6
        m.update(rng.random((12, 9)), gt, rng.random((12, 9)) > 0.5)
    per_image, results = m.per_image(), m.results()
    assert results["maxF"] == np.max(np.mean(per_image.pop("maxF"), axis=0))
    assert set(per_image) == set(results) - {"maxF", "n"}
    for key, values in per_image.items():
        assert len(values) == 3 and results[key] == pytest.approx(np.mean(values), abs=1e-15)


# ----------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("pred, gt, message", [
    (np.full((4, 4), 1.5), np.zeros((4, 4), bool), r"\[0, 1\]"),
    (np.full((4, 4), np.nan), np.zeros((4, 4), bool), "NaN"),
    (np.zeros((4, 4), np.int32), np.zeros((4, 4), bool), "dtype"),
    (np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.float32), "gt must be bool or uint8"),
    (np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), bool), "2-D"),
    (np.zeros((0, 4), np.uint8), np.zeros((4, 4), bool), "non-empty"),
    ([[0, 1]], np.zeros((1, 2), bool), "numpy array"),
])
def test_seg_bad_input(pred, gt, message):
    with pytest.raises(ValueError, match=message):
        SegMetrics().update(pred, gt)


def test_seg_scores_bad_input():
    with pytest.raises(ValueError, match="shape mismatch"):
        metrics.seg_scores(np.zeros((3, 4), np.uint8), np.zeros((4, 3), bool))
    with pytest.raises(ValueError, match="uint8 pred and a bool gt"):
        metrics.seg_scores(np.zeros((3, 4)), np.zeros((3, 4), bool))


def test_iou_bad_input():
    with pytest.raises(ValueError, match="shape mismatch"):
        mask_iou(np.zeros((3, 4), bool), np.zeros((4, 3), bool))
    with pytest.raises(ValueError, match="bool"):
        boundary_iou(np.zeros((3, 4), np.uint8), np.zeros((3, 4), bool))


def test_results_before_update():
    with pytest.raises(ValueError, match="before any update"):
        SegMetrics().results()
    with pytest.raises(ValueError, match="before any update"):
        MattingMetrics().results()


# ----------------------------------------------------------------------------------------------
# Matting
# ----------------------------------------------------------------------------------------------

def test_sad_mse_by_hand():
    pred = np.array([[0.0, 1.0], [0.5, 0.25]])
    gt = np.array([[0.0, 0.0], [1.0, 0.25]])
    s = matting_scores(pred, gt)
    assert s["SAD"] == pytest.approx((1 + 0.5) / 1000)
    assert s["MSE"] == pytest.approx((1 + 0.25) / 4 * 1e3)
    region = np.array([[False, False], [True, True]])
    s = matting_scores(pred, gt, region)
    assert s["SAD"] == pytest.approx(0.5 / 1000)
    assert s["MSE"] == pytest.approx(0.25 / 2 * 1e3)


def test_conn_by_hand_and_largest_component_is_never_background():
    # One row, 4-connectivity. For t = 0.1 .. 0.5 the thresholded intersection is {0, 1} and {4}:
    # the largest component is {0, 1} (the background {2, 3, 5} is larger and must not be picked).
    # Pixels 2..5 leave it at t = 0.1, so l = 0 there; pixels 0, 1 stay in it up to t = 1, so l = 1.
    # d_pred = [0, 0, 0, 0, .5, 0] -> phi_pred = [1, 1, 1, 1, .5, 1];
    # d_gt = [0, 0, 1, 0, 1, 0]   -> phi_gt = [1, 1, 0, 1, 0, 1]; sum |diff| = 1.5.
    pred = np.array([[1.0, 1.0, 0.0, 0.0, 0.5, 0.0]])
    gt = np.array([[1.0, 1.0, 1.0, 0.0, 1.0, 0.0]])
    assert matting_scores(pred, gt)["Conn"] == pytest.approx(1.5 / 1000)


def test_conn_thresholds_by_hand():
    # A 2x2 block of alpha 1 in both maps keeps l = 1 there. The other pixel is cut from it by a
    # zero column, so it leaves the largest component at t = 0.1: l = 0, d = alpha.
    # pred 0.1 -> d = 0.1 < 0.15 -> phi = 1; gt 0.3 -> phi = 0.7: contributes 0.3.
    # A pixel with pred 0.2, gt 0.5 (also isolated): phi 0.8 vs 0.5: contributes 0.3. Total 0.6.
    pred = np.array([[1, 1, 0, 0.1, 0, 0.2], [1, 1, 0, 0, 0, 0]])
    gt = np.array([[1, 1, 0, 0.3, 0, 0.5], [1, 1, 0, 0, 0, 0]])
    assert matting_scores(pred, gt)["Conn"] == pytest.approx(0.6 / 1000)


def test_conn_level_is_threshold_before_leaving():
    # Pixel 2 is in the largest component ({0, 1, 2}, alpha >= t in both) for t <= 0.5, and out from
    # t = 0.6 on: l = 0.5. pred 0.9 -> d = 0.4 -> phi 0.6; gt 0.5 -> d = 0 -> phi 1. |diff| = 0.4.
    pred = np.array([[1.0, 1.0, 0.9]])
    gt = np.array([[1.0, 1.0, 0.5]])
    assert matting_scores(pred, gt)["Conn"] == pytest.approx(0.4 / 1000)


def test_conn_ties_go_to_first_component_in_column_major_order():
    # Two single-pixel components for t = 0.1 .. 0.5 (none from 0.6 on): B = (0, 2) with pred 0.6,
    # gt 0.5 and A = (2, 0) with pred 0.5, gt 0.5. MATLAB's bwconncomp scans column-major, so the
    # tie goes to A; B leaves at t = 0.1 (l = 0): phi_pred = 1 - 0.6 = 0.4, phi_gt = 0.5 -> 0.1.
    # A leaves at t = 0.6 (l = 0.5): d = 0 in both -> 0. (Row-major order would pick B: total 0.)
    pred = np.zeros((3, 3))
    gt = np.zeros((3, 3))
    pred[0, 2], gt[0, 2] = 0.6, 0.5
    pred[2, 0], gt[2, 0] = 0.5, 0.5
    assert matting_scores(pred, gt)["Conn"] == pytest.approx(0.1 / 1000)


def gaussgradient_2d(image, sigma=1.4):
    """DIM's MATLAB gaussgradient written out in 2-D (the kernel built entry by entry)."""
    half = int(np.ceil(sigma * np.sqrt(-2 * np.log(np.sqrt(2 * np.pi) * sigma * 0.01))))
    size = 2 * half + 1

    def gauss(x):
        return np.exp(-x ** 2 / (2 * sigma ** 2)) / (sigma * np.sqrt(2 * np.pi))

    hx = np.zeros((size, size))
    for i in range(size):
        for j in range(size):
            u, v = i - half, j - half
            hx[i, j] = gauss(u) * (-v * gauss(v) / sigma ** 2)
    hx /= np.sqrt(np.sum(hx * hx))
    gx = ndimage.convolve(image, hx, mode="nearest")
    gy = ndimage.convolve(image, hx.T, mode="nearest")
    return np.sqrt(gx ** 2 + gy ** 2)


def test_grad_equals_2d_gaussgradient():
    rng = np.random.default_rng(0)
    pred = ndimage.gaussian_filter(rng.random((31, 44)), 2)
    gt = (ndimage.gaussian_filter(rng.random((31, 44)), 3) > 0.5).astype(float)
    norm = lambda a: (a - a.min()) / (a.max() - a.min())  # noqa: E731  (mat2gray)
    expected = np.sum((gaussgradient_2d(norm(pred)) - gaussgradient_2d(norm(gt))) ** 2) / 1000
    assert matting_scores(pred, gt)["Grad"] == pytest.approx(expected, rel=1e-10)
    assert metrics._gaussian_derivative_filters()[0].size == 9  # the 9x9 kernel of sigma 1.4


@settings(max_examples=20, deadline=None)
@given(h=st.integers(1, 30), w=st.integers(1, 30), seed=st.integers(0, 2 ** 32 - 1))
def test_matting_properties(h, w, seed):
    rng = np.random.default_rng(seed)
    gt = rng.random((h, w))
    pred = rng.random((h, w))
    # Perfect prediction scores 0 everywhere.
    assert all(v == 0 for v in matting_scores(gt, gt).values())
    # SAD and MSE are their definitions.
    s = matting_scores(pred, gt)
    assert s["SAD"] == pytest.approx(np.abs(pred - gt).sum() / 1000)
    assert s["MSE"] == pytest.approx(((pred - gt) ** 2).mean() * 1e3)
    # A trimap restricts every metric to its unknown region (trimap == 128).
    trimap = rng.choice(np.array([0, 128, 255], np.uint8), (h, w))
    unknown = trimap == 128
    m = MattingMetrics()
    m.update(pred, gt, trimap)
    got = m.results()
    assert got["region"] == "unknown (trimap == 128)" and got["n"] == 1
    assert got["SAD"] == pytest.approx(np.abs(pred - gt)[unknown].sum() / 1000)
    assert got["MSE"] == pytest.approx(
        ((pred - gt)[unknown] ** 2).mean() * 1e3 if unknown.any() else 0
    )
    for key, value in matting_scores(pred, gt, unknown).items():
        assert got[key] == pytest.approx(value), key
    # SAD and MSE do not see the known region at all.
    changed = np.where(unknown, pred, rng.random((h, w)))
    for key in ("SAD", "MSE"):
        assert matting_scores(changed, gt, unknown)[key] == pytest.approx(got[key])


def test_matting_accumulates_means_and_uint8_equals_float():
    rng = np.random.default_rng(5)
    maps = [
        (
            rng.integers(0, 256, (12, 17), dtype=np.uint8),
            rng.integers(0, 256, (12, 17), dtype=np.uint8),
        )
        for _ in range(3)
    ]
    m_u8, m_f = MattingMetrics(), MattingMetrics()
    for p, g in maps:
        m_u8.update(p, g)
        m_f.update(p / 255, g / 255)
    r_u8, r_f = m_u8.results(), m_f.results()
    assert r_u8["region"] == "whole image" and r_u8["n"] == 3
    for key in ("SAD", "MSE", "Grad", "Conn"):
        each = [matting_scores(p / 255, g / 255)[key] for p, g in maps]
        assert r_u8[key] == pytest.approx(np.mean(each))
        assert r_f[key] == pytest.approx(np.mean(each))
        assert m_u8.per_image()[key] == pytest.approx(each)


def test_matting_region_mixing_and_bad_input():
    a = np.zeros((4, 4), np.uint8)
    m = MattingMetrics()
    m.update(a, a)
    with pytest.raises(ValueError, match="region mismatch"):
        m.update(a, a, np.full((4, 4), 128, np.uint8))
    with pytest.raises(ValueError, match="shape mismatch"):
        MattingMetrics().update(a, np.zeros((4, 5), np.uint8))
    with pytest.raises(ValueError, match="shape mismatch"):
        MattingMetrics().update(a, a, np.zeros((5, 4), np.uint8))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        MattingMetrics().update(np.full((4, 4), 2.0), a)
    with pytest.raises(ValueError, match="NaN"):
        MattingMetrics().update(a, np.full((4, 4), np.nan))
    with pytest.raises(ValueError, match="trimap must be uint8"):
        MattingMetrics().update(a, a, np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="dtype"):
        MattingMetrics().update(a.astype(np.int64), a)


# ----------------------------------------------------------------------------------------------
# Human correction effort: each step against the library PySODMetrics runs it with (OpenCV,
# scikit-image), and HCE against PySODMetrics' HumanCorrectionEffortMeasure
# ----------------------------------------------------------------------------------------------


def hce_pair(k, rng):
    """A (mask, GT) pair, both bool: blobs, thin lines 1-3 px wide, or meshes as GT; the mask the GT
    with blobs of errors flipped, grown by 1-3 px, or eroded."""
    from skimage.morphology import skeletonize
    h, w = rng.integers(8, 90, 2)
    gt = ndimage.gaussian_filter(rng.random((h, w)), rng.uniform(0.7, 4)) > rng.uniform(0.4, 0.6)
    if k % 3 == 0:
        gt = ndimage.binary_dilation(skeletonize(gt), iterations=int(rng.integers(0, 2)))
    flips = ndimage.gaussian_filter(rng.random((h, w)), rng.uniform(0.5, 3)) > 0.5
    mask = gt ^ (flips & (rng.random((h, w)) < rng.uniform(0, 0.8)))
    if k % 4 == 1:
        mask = ndimage.binary_dilation(gt, iterations=int(rng.integers(1, 4)))
    if k % 4 == 2:
        mask = ndimage.binary_erosion(gt, iterations=int(rng.integers(1, 3)))
    return mask, gt


def oracle_hce(mask, gt):
    measure = py_sod_metrics.HumanCorrectionEffortMeasure()  # relax 5, epsilon 2
    measure.step((mask * 255).astype(np.uint8), (gt * 255).astype(np.uint8))
    return measure.hces[0]


def test_skeleton_equals_scikit_image():
    from skimage.morphology import skeletonize
    rng = np.random.default_rng(0)
    for k in range(60):
        mask, gt = hce_pair(k, rng)
        for image in (mask, gt, rng.random(gt.shape) < 0.5):
            np.testing.assert_array_equal(metrics.skeleton(image), skeletonize(image))


def test_contours_equal_opencv_in_points_and_order():
    rng = np.random.default_rng(1)
    cases = [np.zeros((5, 5), bool), np.ones((4, 6), bool)]
    ring = np.zeros((9, 9), bool)
    ring[1:8, 1:8], ring[3:6, 3:6], ring[4, 4] = True, False, True  # a region in a hole
    cases.append(ring)
    for k in range(80):
        mask, gt = hce_pair(k, rng)
        cases += [mask, gt, rng.random(gt.shape) < rng.uniform(0.2, 0.8)]
    for mask in cases:
        found, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_TREE, cv2.CHAIN_APPROX_NONE)
        assert [[tuple(p) for p in c[:, 0].tolist()] for c in found] == metrics.contours(mask)


def test_polygon_points_equal_opencv_approx_poly_dp():
    rng = np.random.default_rng(2)
    lines = [[(0, 0)], [(0, 0), (3, 1)], [(1, 4), (8, 3), (9, 0), (11, 0), (10, 0), (5, 3)]]
    grid = [(x, y) for x in range(15) for y in range(15)]
    for _ in range(300):  # distinct points anywhere
        order = rng.permutation(len(grid))[: int(rng.integers(1, 40))]
        lines.append([grid[i] for i in order])
    for k in range(40):  # pieces of borders, either way round, as HCE cuts them
        for border in metrics.contours(hce_pair(k, rng)[1]):
            a = int(rng.integers(0, len(border)))
            piece = border[a: int(rng.integers(a, len(border))) + 1]
            if len(set(piece)) == len(piece) and (len(piece) == 1 or piece[0] != piece[-1]):
                lines.append(piece[::-1] if k % 2 else piece)
    for line in lines:
        approx = cv2.approxPolyDP(np.array(line, np.int32)[:, None], 2.0, False)
        assert metrics.polygon_points(line, 2.0) == len(approx), line


def test_hce_equals_pysodmetrics_on_random_maps():
    rng = np.random.default_rng(3)
    for k in range(80):
        mask, gt = hce_pair(k, rng)
        assert metrics.human_correction_effort(mask, gt) == oracle_hce(mask, gt), k


def test_hce_by_hand():
    """A perfect mask costs nothing; a missed 1 px line costs its two ends (it is its own skeleton,
    one straight piece, two polygon vertices); a false 1 px line costs nothing (the union eroded
    by 5 px holds none of it: relaxed away); a missed 12 x 12 square with a 1 px gap inside it
    costs what PySODMetrics counts."""
    gt = np.zeros((20, 30), bool)
    gt[10, 5:25] = True
    empty = np.zeros_like(gt)
    assert metrics.human_correction_effort(gt, gt) == 0 == oracle_hce(gt, gt)
    assert metrics.human_correction_effort(empty, empty) == 0
    assert metrics.human_correction_effort(empty, gt) == 2 == oracle_hce(empty, gt)
    assert metrics.human_correction_effort(gt, empty) == 0 == oracle_hce(gt, empty)
    square = np.zeros((30, 30), bool)
    square[8:20, 8:20] = True
    square[14, 10:18] = False
    none = np.zeros_like(square)
    assert metrics.human_correction_effort(none, square) == oracle_hce(none, square) > 0


def test_seg_metrics_hce_is_the_image_mean_of_the_masks():
    rng = np.random.default_rng(4)
    seg, values = SegMetrics(hce=True), []
    for k in range(4):
        mask, gt = hce_pair(k, rng)
        seg.update(rng.random(gt.shape), gt, mask)
        values.append(metrics.human_correction_effort(mask, gt))
    assert seg.per_image()["HCE"] == values
    assert seg.results()["HCE"] == pytest.approx(np.mean(values))
    plain = SegMetrics()
    plain.update(rng.random((5, 5)), np.ones((5, 5), bool))
    assert "HCE" not in plain.results() and "HCE" not in plain.per_image()
    assert metrics.column("HCE") == "HCE (binary)"
