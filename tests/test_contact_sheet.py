"""Tests for contact_sheet.py by hand. (The sheet's grid of equal cells: tests/test_evaluate.py
--vis and tests/test_demo.py.)"""

import torch

import contact_sheet


def test_error_map_by_hand():
    prediction = torch.tensor([[255, 0], [100, 50]], dtype=torch.uint8).numpy()
    gt = torch.tensor([[0, 255], [100, 0]], dtype=torch.uint8).numpy()
    rgb = contact_sheet.error_map(prediction, gt)
    assert rgb[..., 0].tolist() == [[255, 0], [0, 50]]  # red: above the GT
    assert rgb[..., 1].tolist() == [[0, 0], [0, 0]]
    assert rgb[..., 2].tolist() == [[0, 255], [0, 0]]  # blue: below the GT
