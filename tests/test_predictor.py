"""The one predictor contract (predictor.py's docstring, DESIGN.md): every implementation there is
on the CPU, predictor.Predictor for SAMA and for plain SAM and sama_onnx.OnnxPredictor where
onnxruntime is installed, takes the same image and prompts, answers with the same named maps, and
refuses the same bad input with the same line."""

import importlib.util

import numpy as np
import pytest
from conftest import SAM_PTH, SAMA_PT, random_image

from frame import PromptError
from load_sam_weights import load_sama
from predictor import Predictor
from sama import TASKS

H, W = 90, 120
PROMPTS = [
    {"box": np.array([10.0, 20, 100, 80])},
    {"box": np.array([0.0, 0, W, H])},
    {"points": np.array([[60.0, 45]]), "labels": np.array([1])},
    {"points": np.array([[30.0, 30], [90, 60], [5, 85]]), "labels": np.array([1, 0, 1]),
     "box": np.array([20.0, 10, 110, 70])},
]
BAD_PROMPTS = [
    ({}, "^give a box and / or at least one point$"),
    ({"box": np.array([125.0, 20, 130, 80])}, "^box 125 20 130 80: outside the 120x90 image$"),
    ({"points": np.array([[60.0, np.nan]]), "labels": np.array([1])},
     r"^point \(60, nan\): coordinates must be finite numbers$"),
    ({"points": np.array([[60.0, 45]]), "labels": np.array([2])},
     r"^labels: 2: only 1 \(foreground\) and 0 \(background\)$"),
    ({"points": np.array([[60.0, 45]])}, "^labels: one per point is needed"),
]


def implementations(request) -> dict:
    model = load_sama(SAMA_PT, SAM_PTH)
    found = {"SAMA": Predictor(model, TASKS), "SAM": Predictor(model.sam)}
    if importlib.util.find_spec("onnxruntime") and importlib.util.find_spec("onnxscript"):
        from deploy.sama_onnx import OnnxPredictor  # requirements-onnx.txt

        found["ONNX"] = OnnxPredictor(request.getfixturevalue("exported"), threads=1)
    return found


def test_every_predictor_keeps_the_one_contract(request):
    image = random_image(H, W, 0)
    for name, predictor in implementations(request).items():
        with pytest.raises(PromptError, match="^call set_image before predict$"):
            predictor.predict(**PROMPTS[0])
        with pytest.raises(ValueError, match=r"^image: an \(H, W, 3\) uint8 RGB array is needed"):
            predictor.set_image(image.astype(np.float32))
        predictor.set_image(image)
        for prompt in PROMPTS:
            maps = predictor.predict(**prompt)
            assert list(maps) == ["seg", "mask", "alpha", "sam"], name
            assert [m.dtype for m in maps.values()] == [np.float32, bool, np.float32, bool], name
            assert all(m.shape == (H, W) for m in maps.values()), name
            for key in ("seg", "alpha"):
                assert 0 <= maps[key].min() and maps[key].max() <= 1, (name, key)
        for prompt, line in BAD_PROMPTS:
            with pytest.raises(PromptError, match=line):
                predictor.predict(**prompt)
        # a box partly outside: clipped to the image, as SAM's predictor takes it, and said
        with pytest.warns(UserWarning, match="^box -10 20 130 80: partly outside the 120x90 "
                                             "image, clipped to 0 20 120 80$"):
            clipped = predictor.predict(box=np.array([-10.0, 20, 130, 80]))
        inside = predictor.predict(box=np.array([0.0, 20, 120, 80]))
        assert all(np.array_equal(clipped[k], inside[k]) for k in inside), name
