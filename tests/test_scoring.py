"""Tests for scoring.py that need no model: the point prompts drawn from a GT, the threshold
validation picks, the contact sheet's error map by hand. (The sheet's grid of equal cells:
tests/test_evaluate.py --vis and tests/test_demo.py. Scoring a split end to end:
tests/test_evaluate.py, tests/test_d646_refmatte.py; the threshold picked in training:
tests/test_train.py.)"""

import numpy as np

import scoring


def test_sample_points_deterministic_nested_and_on_the_object():
    gt = np.zeros((30, 50), np.uint8)
    gt[5:12, 20:41] = 255
    points = scoring.sample_points(gt, "img_1")
    assert points.shape == (10, 2)
    assert np.array_equal(points, scoring.sample_points(gt.copy(), "img_1"))
    assert not np.array_equal(points, scoring.sample_points(gt, "img_2"))
    xs, ys = points[:, 0].astype(int), points[:, 1].astype(int)
    assert (gt[ys, xs] > 128).all() and len({(x, y) for x, y in zip(xs, ys)}) == 10
    tiny = np.zeros((8, 8), np.uint8)
    tiny[3, 4] = tiny[6, 1] = 255
    assert sorted(map(tuple, scoring.sample_points(tiny, "t").tolist())) == [
        (1.0, 6.0),
        (4.0, 3.0),
    ]


def test_pick_threshold_takes_the_best_miou_and_breaks_ties_towards_one_half():
    assert scoring.pick_threshold({0.3: 0.2, 0.4: 0.5, 0.5: 0.6, 0.6: 0.7, 0.7: 0.1}) == 0.6
    assert scoring.pick_threshold({0.3: 0.8, 0.4: 0.8, 0.5: 0.1, 0.6: 0.2, 0.7: 0.3}) == 0.4
    assert scoring.pick_threshold({0.3: 0.5, 0.4: 0.5, 0.5: 0.5, 0.6: 0.5, 0.7: 0.5}) == 0.5


def test_error_map_by_hand():
    prediction = np.array([[255, 0], [100, 50]], dtype=np.uint8)
    gt = np.array([[0, 255], [100, 0]], dtype=np.uint8)
    rgb = scoring.error_map(prediction, gt)
    assert rgb[..., 0].tolist() == [[255, 0], [0, 50]]  # red: above the GT
    assert rgb[..., 1].tolist() == [[0, 0], [0, 0]]
    assert rgb[..., 2].tolist() == [[0, 255], [0, 0]]  # blue: below the GT
