"""Property tests on the tiny SAM: output shapes and consistency for any image size and prompt
mix."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sam import (
    SAM_VARIANTS,
    Sam,
    SamPredictor,
    image_to_frame,
    postprocess_masks,
    preprocess_shape,
    prompt_tensors,
    scale_coords,
)

CFG = SAM_VARIANTS["tiny"]
S, LOW = CFG.image_size, 4 * CFG.grid_size  # frame side, low-res mask side
FAST = settings(max_examples=20, deadline=None)

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.torch_threads


@pytest.fixture(scope="module")
def model() -> Sam:
    torch.manual_seed(0)
    return Sam(CFG).eval()


@st.composite
def predictor_inputs(draw):
    h, w = draw(st.integers(8, 600)), draw(st.integers(8, 600))
    n = draw(st.integers(0, 12))
    with_box = draw(st.booleans()) or n == 0  # at least one prompt
    with_mask = draw(st.booleans())
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    kwargs = dict(multimask_output=draw(st.booleans()))
    if n:
        kwargs["point_coords"] = rng.uniform(0, 1, (n, 2)) * [w, h]
        kwargs["point_labels"] = rng.integers(0, 2, n)
    if with_box:
        x0, x1 = np.sort(rng.uniform(0, w, 2))
        y0, y1 = np.sort(rng.uniform(0, h, 2))
        kwargs["box"] = np.array([x0, y0, x1, y1])
    if with_mask:
        kwargs["mask_input"] = rng.normal(0, 5, (1, LOW, LOW)).astype(np.float32)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    return image, kwargs


@FAST
@given(predictor_inputs())
def test_predictor_shapes(model, inputs):
    image, kwargs = inputs
    h, w = image.shape[:2]
    M = 3 if kwargs["multimask_output"] else 1
    predictor = SamPredictor(model)
    predictor.set_image(image)
    assert predictor.get_image_embedding().shape == (
        1,
        CFG.prompt_embed_dim,
        CFG.grid_size,
        CFG.grid_size,
    )
    assert (
        tuple(predictor.input_size) == preprocess_shape(h, w, S) and max(predictor.input_size) == S
    )
    masks, scores, low = predictor.predict(**kwargs)
    assert masks.shape == (M, h, w) and masks.dtype == bool
    assert scores.shape == (M,) and low.shape == (M, LOW, LOW)
    assert np.isfinite(scores).all() and np.isfinite(low).all()
    logits, scores2, _ = predictor.predict(**kwargs, return_logits=True)
    assert logits.shape == (M, h, w) and logits.dtype == np.float32
    np.testing.assert_array_equal(masks, logits > model.mask_threshold)
    # the encoder ran once; predict has no hidden state
    np.testing.assert_array_equal(scores, scores2)


@st.composite
def batch_inputs(draw):
    B = draw(st.integers(1, 3))
    n = draw(st.integers(0, 12))
    with_box = draw(st.booleans()) or n == 0
    with_mask = draw(st.booleans())
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    kwargs = dict(multimask_output=draw(st.booleans()))
    if n:
        kwargs["points"] = torch.rand(B, n, 2, generator=g) * S
        kwargs["point_labels"] = torch.randint(-1, 2, (B, n), generator=g)  # -1: padding
    if with_box:
        xy = torch.rand(B, 2, 2, generator=g).sort(dim=1).values * S  # corners sorted per axis
        kwargs["boxes"] = xy.reshape(B, 4)
    if with_mask:
        kwargs["mask_inputs"] = torch.randn(B, 1, LOW, LOW, generator=g) * 5
    return torch.randn(B, 3, S, S, generator=g), kwargs


@FAST
@given(batch_inputs())
def test_batched_forward_shapes_and_per_item_equality(model, inputs):
    """Shapes for any batch, and each item equal to running it alone (no mixing across the
    batch)."""
    images, kwargs = inputs
    B, M = images.shape[0], 3 if kwargs["multimask_output"] else 1
    with torch.no_grad():
        low, iou = model(images, **kwargs)
        assert low.shape == (B, M, LOW, LOW) and iou.shape == (B, M)
        assert torch.isfinite(low).all() and torch.isfinite(iou).all()
        i = B - 1
        one = {k: (v[i : i + 1] if torch.is_tensor(v) else v) for k, v in kwargs.items()}
        low1, iou1 = model(images[i : i + 1], **one)
    torch.testing.assert_close(low1[0], low[i], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(iou1[0], iou[i], atol=1e-4, rtol=1e-4)


def test_batched_forward_is_differentiable(model):
    """Gradients reach the image, every part of SAM, and the mask prompt."""
    torch.manual_seed(1)
    images = torch.randn(2, 3, S, S, requires_grad=True)
    masks_in = torch.randn(2, 1, LOW, LOW, requires_grad=True)
    low, iou = model(
        images,
        points=torch.rand(2, 3, 2) * S,
        point_labels=torch.tensor([[1, 0, 1], [1, 1, -1]]),
        boxes=torch.tensor([[10.0, 20, 200, 180], [0, 0, 255, 255]]),
        mask_inputs=masks_in,
        multimask_output=True,
    )
    (low.sigmoid().mean() + iou.sum()).backward()
    assert images.grad.abs().sum() > 0 and masks_in.grad.abs().sum() > 0
    for part in ("image_encoder", "prompt_encoder", "mask_decoder"):
        grads = [p.grad for p in getattr(model, part).parameters()]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), part
    model.zero_grad(set_to_none=True)


@FAST
@given(st.integers(8, 600), st.integers(8, 600))
def test_predictor_equals_forward_on_the_frame(model, h, w):
    """SamPredictor = image_to_frame + scale_coords + Sam.forward + postprocess_masks, for any image
    size."""
    rng = np.random.default_rng(h * 1000 + w)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    pts, labels = rng.uniform(0, 1, (2, 2)) * [w, h], np.array([1, 0])
    predictor = SamPredictor(model)
    predictor.set_image(image)
    logits, scores, low = predictor.predict(
        point_coords=pts, point_labels=labels, multimask_output=False, return_logits=True
    )
    frame = image_to_frame(image, S)[None]
    points = torch.tensor(scale_coords(pts, (h, w), S), dtype=torch.float32)[None]
    with torch.no_grad():
        low2, iou2 = model(frame, points, torch.tensor(labels)[None], multimask_output=False)
        full = postprocess_masks(low2, S, preprocess_shape(h, w, S), (h, w))
    np.testing.assert_allclose(low, low2[0].numpy(), atol=1e-4)
    np.testing.assert_allclose(scores, iou2[0].numpy(), atol=1e-4)
    np.testing.assert_allclose(logits, full[0].numpy(), atol=1e-4)


@pytest.mark.parametrize("prompt", [
    dict(box=np.array([10.0, np.nan, 100.0, 90.0])),
    dict(box=np.array([10.0, 5.0, np.inf, 90.0])),
    dict(point_coords=np.array([[np.nan, 5.0]]), point_labels=np.array([1])),
])
def test_non_finite_prompts_are_refused(prompt):
    """NaN compares False with everything: unchecked, a NaN box would give an empty mask
    silently."""
    with pytest.raises(ValueError, match="must be finite"):
        prompt_tensors(prompt.get("point_coords"), prompt.get("point_labels"), prompt.get("box"),
                       (120, 160), 64, torch.device("cpu"))
