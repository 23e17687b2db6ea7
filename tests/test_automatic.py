"""Every object (predictor.py): SAM's automatic mask generation against Meta's
SamAutomaticMaskGenerator (the test oracle) on the same weights, settings and image; its pieces on
hand-computed cases.

Meta's generator imports torchvision's batched_nms and box_area, and torchvision cannot be installed
beside this torch. For the ORACLE ONLY, this test gives it a stand-in `torchvision.ops.boxes`
module: box_area as its definition, and batched_nms as a plain Python loop over the boxes in
decreasing score (a different writing of NMS from predictor.nms, so that the comparison can fail).
"""

from __future__ import annotations

import importlib
import json
import sys
import types

import numpy as np
import pytest
import torch
from conftest import SAM_PTH, build_official_sam, import_official

import predictor as predictor_module
from load_sam_weights import load_sam
from miniature.everything_study import TEST_SEEDS, VAL_SEEDS, scene
from predictor import Predictor
from sam import SAM_VARIANTS

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.torch_threads


def python_batched_nms(boxes, scores, idxs, iou_threshold):
    """torchvision.ops.batched_nms, written plainly (all categories equal here, as Meta's generator
    calls it with zeros): highest score first; drop a box whose IoU with a kept box of its
    category is above the threshold."""
    boxes, scores = boxes.tolist(), scores.tolist()

    def iou(a, b):
        w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
        return w * h / union if union > 0 else 0.0

    keep = []
    for i in sorted(range(len(boxes)), key=lambda i: -scores[i]):
        if all(idxs[i] != idxs[k] or iou(boxes[i], boxes[k]) <= iou_threshold for k in keep):
            keep.append(i)
    return torch.tensor(keep, dtype=torch.long)


def official_generator_class():
    """Meta's SamAutomaticMaskGenerator, imported with the stand-in torchvision.ops.boxes."""
    import_official()
    name = "segment_anything.automatic_mask_generator"
    if name not in sys.modules:
        boxes = types.ModuleType("torchvision.ops.boxes")
        boxes.batched_nms = python_batched_nms
        boxes.box_area = lambda b: (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        ops = types.ModuleType("torchvision.ops")
        ops.boxes = boxes
        stand_in = {"torchvision": types.ModuleType("torchvision"), "torchvision.ops": ops,
                    "torchvision.ops.boxes": boxes}
        saved = {k: sys.modules.get(k) for k in stand_in}
        sys.modules.update(stand_in)
        try:
            importlib.import_module(name)
        finally:
            for k, v in saved.items():
                if v is None:
                    sys.modules.pop(k, None)
                else:
                    sys.modules[k] = v
    return sys.modules[name].SamAutomaticMaskGenerator


@pytest.fixture(scope="module")
def standin_pair():
    """Meta's Sam and this project's, both with the shipped stand-in's weights."""
    official = build_official_sam(SAM_VARIANTS["tiny"])
    official.load_state_dict(torch.load(SAM_PTH, weights_only=True))
    return official.eval(), Predictor(load_sam(SAM_PTH))


@pytest.mark.parametrize("seed,t_iou,t_stab", [(TEST_SEEDS[0], 0.5, 0.8),
                                               (TEST_SEEDS[1], 0.3, 0.6)])
def test_masks_scores_and_order_equal_metas_generator(standin_pair, seed, t_iou, t_stab):
    official, predictor = standin_pair
    image = scene(seed)[0]
    settings = predictor_module.Settings(points_per_side=16, pred_iou_thresh=t_iou,
                                  stability_score_thresh=t_stab)
    theirs = official_generator_class()(
        official, points_per_side=16, pred_iou_thresh=t_iou, stability_score_thresh=t_stab,
        output_mode="binary_mask").generate(image)
    predictor.set_image(image)
    ours = predictor_module.find_objects(predictor, settings)
    assert len(theirs) >= 2  # thresholds at which masks survive
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):  # the same order: decreasing predicted IoU
        assert abs(a.predicted_iou - b["predicted_iou"]) < 1e-4
        assert abs(a.stability - b["stability_score"]) < 2e-3  # a pixel at the threshold
        np.testing.assert_allclose(a.point, b["point_coords"][0])
        seg = b["segmentation"]
        iou = (a.mask & seg).sum() / (a.mask | seg).sum()
        assert iou > 0.999, iou  # identical but for logits within rounding of the threshold
        x, y, w, h = b["bbox"]  # XYWH of the inclusive box
        np.testing.assert_allclose(a.box, [x, y, x + w, y + h], atol=1)


def test_at_metas_defaults_the_stand_in_keeps_what_meta_keeps(standin_pair):
    """Meta's thresholds (0.88 / 0.95) on the stand-in: the same (few or no) masks as Meta's."""
    official, predictor = standin_pair
    image = scene(VAL_SEEDS[0])[0]
    theirs = official_generator_class()(official, points_per_side=8).generate(image)
    predictor.set_image(image)
    ours = predictor_module.find_objects(predictor, predictor_module.Settings(points_per_side=8))
    assert len(ours) == len(theirs)


def test_point_grid_is_metas():
    amg = import_official() and importlib.import_module("segment_anything.utils.amg")
    for n in (1, 4, 32):
        np.testing.assert_allclose(predictor_module.point_grid(n), amg.build_point_grid(n))


def test_stability_score_by_hand():
    logits = torch.tensor([[[3.0, 0.5, -0.5], [-2.0, 1.5, 0.9]]])  # (1, 2, 3)
    # above +1: 3.0, 1.5 (2 pixels); above -1: all but -2.0 (5 pixels)
    assert predictor_module.stability_score(logits, 0.0, 1.0).item() == pytest.approx(2 / 5)
    far_below = torch.full((1, 2, 2), -5.0)
    assert torch.isnan(predictor_module.stability_score(far_below, 0.0, 1.0)).all()


def test_mask_boxes_by_hand():
    masks = torch.zeros(3, 5, 6, dtype=torch.bool)
    masks[0, 1:4, 2:5] = True
    masks[1, 2, 0] = True
    assert predictor_module.mask_boxes(masks).tolist() == [[2, 1, 4, 3], [0, 2, 0, 2], [0, 0, 0, 0]]


def test_nms_by_hand():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30], [0, 0, 10, 5.0]])
    scores = torch.tensor([0.5, 0.9, 0.7, 0.8])
    # 1 (0.9) kept; 3 (0.8): IoU with 1 = 36/95 < 0.7, kept; 2 (0.7) kept; 0: IoU with 1 0.81
    assert predictor_module.nms(boxes, scores, 0.7).tolist() == [1, 3, 2]
    assert predictor_module.nms(boxes, scores, 0.3).tolist() == [1, 2]
    assert predictor_module.nms(boxes[:0], scores[:0], 0.7).tolist() == []


def test_nms_equals_the_python_loop_on_random_boxes():
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        xy = torch.rand(40, 2, generator=g) * 50
        boxes = torch.cat([xy, xy + torch.rand(40, 2, generator=g) * 30], 1)
        scores = torch.rand(40, generator=g)
        expected = python_batched_nms(boxes, scores, [0] * 40, 0.5)
        assert predictor_module.nms(boxes, scores, 0.5).tolist() == expected.tolist()


def test_settings_recorded_beside_the_checkpoint_and_metas_for_others(tmp_path):
    standin = load_sam(SAM_PTH)
    recorded = json.loads(predictor_module.thresholds_file(SAM_PTH).read_text())
    s = predictor_module.settings_for(standin)
    assert (s.pred_iou_thresh, s.stability_score_thresh) == (
        recorded["pred_iou_thresh"], recorded["stability_score_thresh"])
    assert s.box_nms_thresh == 0.7 and s.points_per_side == 32  # the rest Meta's
    # the same record beside other weights names the stand-in's SHA-256: Meta's defaults
    other = tmp_path / "sam_other.pth"
    torch.save({k: v + 1 for k, v in torch.load(SAM_PTH, weights_only=True).items()}, other)
    predictor_module.thresholds_file(other).write_text(json.dumps(recorded))
    assert predictor_module.settings_for(load_sam(other)) == predictor_module.Settings()
    predictor_module.thresholds_file(other).write_text("{not json")
    with pytest.raises(predictor_module.SettingsError, match="sam_other.everything.json"):
        predictor_module.settings_for(load_sam(other))


def test_refine_gives_each_box_the_maps_of_its_own_call(standin_pair):
    """One batched call: masks identical to each box's own call, maps within float rounding
    (tests/test_batch.py's tolerance); no box, no call."""
    _, predictor = standin_pair
    image = scene(TEST_SEEDS[2])[0]
    predictor.set_image(image)
    boxes = [np.array([10.0, 12, 90, 80]), np.array([100.0, 40, 160, 150])]
    refined = predictor_module.refine(predictor, boxes)
    assert len(refined) == 2 and predictor_module.refine(predictor, []) == []
    for maps, box in zip(refined, boxes):
        single = predictor.predict(box=box)
        for name in ("mask", "sam"):
            np.testing.assert_array_equal(maps[name], single[name])
        for name in ("seg", "alpha"):
            np.testing.assert_allclose(maps[name], single[name], rtol=0, atol=1e-5)


def test_a_large_image_is_split_into_smaller_batches_with_the_same_masks(standin_pair,
                                                                         monkeypatch):
    _, predictor = standin_pair
    image = scene(TEST_SEEDS[1])[0]
    h, w = image.shape[:2]
    settings = predictor_module.Settings(points_per_side=8, pred_iou_thresh=0.3,
                                  stability_score_thresh=0.6)
    predictor.set_image(image)
    whole = predictor_module.find_objects(predictor, settings)
    monkeypatch.setattr(predictor_module, "MAX_LOGITS", 3 * h * w * 5)  # room for 5 points a batch
    assert predictor_module.points_per_batch(settings, (h, w)) == 5
    split = predictor_module.find_objects(predictor, settings)
    assert len(split) == len(whole) >= 2
    for a, b in zip(split, whole):
        np.testing.assert_array_equal(a.box, b.box)
        assert (a.mask != b.mask).mean() < 1e-3
        assert abs(a.predicted_iou - b.predicted_iou) < 1e-5
