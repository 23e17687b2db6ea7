"""sam.py: SAM against the official segment-anything package on the same random weights, and
property tests of the tiny SAM's shapes and consistency for any image size and prompt mix.

Parity: every tensor of the official model is randomised (positional encodings included), its
state_dict is saved to a .pth and loaded with load_sam, and both predictors get the same images
and prompts. Tolerance (float32): logits and IoU scores within 1e-4; masks identical except where
the official logit is within 1e-4 of the threshold. The largest differences are printed at the end
of the run.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import DEFAULT_THREADS, random_image, record, torch_threads
from hypothesis import given, settings
from hypothesis import strategies as st

from load_sam_weights import load_sam
from sam import (
    SAM_VARIANTS,
    Sam,
    SamConfig,
    SamPredictor,
    image_to_frame,
    postprocess_masks,
    preprocess_shape,
    prompt_tensors,
    scale_coords,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.torch_threads

# ----------------------------------------------------------------------------------------------
# Parity with the official implementation
# ----------------------------------------------------------------------------------------------

TOL = 1e-4

SMALL_CONFIGS = [
    SAM_VARIANTS["tiny"],  # G 16, window 4: no padding
    # G 10, window 4: windows padded to 12; two global blocks
    SamConfig("s160", 96, 5, 3, (2, 4), image_size=160, window_size=4,
              prompt_embed_dim=64, decoder_mlp_dim=128, decoder_num_heads=4),
    # G 14, window 3: padded to 15; one global block; narrower decoder and mask downscaler
    SamConfig("s224", 64, 4, 2, (1,), image_size=224, window_size=3,
              prompt_embed_dim=32, decoder_mlp_dim=64, decoder_num_heads=2, mask_in_chans=8),
    # patch 8: G 16, window 5: padded to 20; low-res masks are half the frame, not a quarter
    SamConfig("p8", 48, 3, 4, (0, 2), image_size=128, patch_size=8, window_size=5,
              prompt_embed_dim=64, decoder_mlp_dim=96, decoder_num_heads=4),
]

IMAGE_SIZES = [(300, 200), (97, 181), (600, 90), (64, 64)]  # (H, W): tall, wide, very tall, square



def prompts(h: int, w: int) -> dict[str, dict]:
    """The prompt types, in image pixels (x, y), placed relative to the image size."""
    pt = lambda fx, fy: [fx * w, fy * h]  # noqa: E731
    box = np.array([0.2 * w, 0.15 * h, 0.75 * w, 0.8 * h])
    return {
        "point": dict(point_coords=np.array([pt(0.4, 0.5)]), point_labels=np.array([1])),
        "points + negative": dict(
            point_coords=np.array([pt(0.4, 0.5), pt(0.6, 0.3), pt(0.9, 0.9)]),
            point_labels=np.array([1, 1, 0]),
        ),
        "box": dict(box=box),
        "box + points": dict(
            point_coords=np.array([pt(0.5, 0.5), pt(0.3, 0.7)]),
            point_labels=np.array([1, 0]),
            box=box,
        ),
    }


def compare_prediction(
    scale: str, prompt: str, official_predictor, predictor: SamPredictor, kwargs: dict
):
    """One predict() call on both sides: low-res logits, IoU scores, full-size logits and masks."""
    hi_o, iou_o, low_o = official_predictor.predict(**kwargs, return_logits=True)
    masks, iou, low = predictor.predict(**kwargs)
    hi, _, _ = predictor.predict(**kwargs, return_logits=True)
    assert masks.dtype == bool and masks.shape == hi_o.shape and low.shape == low_o.shape
    d_low, d_iou, d_hi = (
        np.abs(low - low_o).max(),
        np.abs(iou - iou_o).max(),
        np.abs(hi - hi_o).max(),
    )
    for quantity, d in (
        ("low-res logits", d_low),
        ("IoU scores", d_iou),
        ("full-size logits", d_hi),
    ):
        record(scale, prompt, quantity, d)
    assert d_low <= TOL and d_iou <= TOL and d_hi <= TOL, (
        f"{prompt}: {d_low:.2e} {d_iou:.2e} {d_hi:.2e}"
    )
    differ = masks != (hi_o > 0.0)
    assert not differ[np.abs(hi_o) >= TOL].any(), f"{prompt}: masks differ away from the threshold"
    record(scale, prompt, "mask px differ", differ.sum())
    return low_o, iou_o


def compare_image(
    scale: str, official_predictor, predictor: SamPredictor, image: np.ndarray, cases
):
    """Embedding, then every (prompt type, multimask) case; "+ mask_input" re-prompts with the best
    previous logits."""
    official_predictor.set_image(image)
    predictor.set_image(image)
    d_emb = (
        (predictor.get_image_embedding() - official_predictor.get_image_embedding())
        .abs()
        .max()
        .item()
    )
    record(scale, "(image embedding)", "embedding", d_emb)
    assert d_emb <= TOL
    assert predictor.original_size == official_predictor.original_size
    assert tuple(predictor.input_size) == tuple(official_predictor.input_size)
    table = prompts(*image.shape[:2])
    for prompt, multimask in cases:
        base = prompt.removesuffix(" + mask_input")
        kwargs = dict(table[base], multimask_output=multimask)
        low, iou = compare_prediction(scale, base, official_predictor, predictor, kwargs)
        if prompt != base:
            # (1, 4G, 4G), the official logits for both
            kwargs["mask_input"] = low[[int(np.argmax(iou))]]
            compare_prediction(scale, prompt, official_predictor, predictor, kwargs)
            if base == "point":  # the mask alone, no sparse prompt at all
                only = dict(mask_input=kwargs["mask_input"], multimask_output=multimask)
                compare_prediction(scale, "mask_input only", official_predictor, predictor, only)


ALL_CASES = [
    (p, m)
    for m in (True, False)
    for p in ("point + mask_input", "points + negative", "box", "box + points + mask_input")
]


def make_pair(official, official_checkpoint, cfg: SamConfig, seed: int):
    off_model, path = official_checkpoint(cfg, seed)
    # official sizes: variant told from shapes
    model = load_sam(path, None if cfg.name in SAM_VARIANTS else cfg)
    assert model.config == cfg
    return off_model, model, official.SamPredictor(off_model), SamPredictor(model)


@pytest.mark.parametrize("cfg", SMALL_CONFIGS, ids=lambda c: c.name)
def test_predictor_parity_small(official, official_checkpoint, cfg):
    off_model, model, off_pred, pred = make_pair(
        official, official_checkpoint, cfg, seed=SMALL_CONFIGS.index(cfg)
    )
    for i, (h, w) in enumerate(IMAGE_SIZES):
        compare_image("small", off_pred, pred, random_image(h, w, seed=i), ALL_CASES)
    # no prompt at all (SAM's "segment something": sparse tokens empty, dense = no_mask)
    compare_prediction("small", "no prompt", off_pred, pred, dict(multimask_output=True))
    # BGR input is flipped to RGB before anything else
    bgr = random_image(120, 90, seed=9)
    off_pred.set_image(bgr, image_format="BGR")
    pred.set_image(bgr, image_format="BGR")
    d = (pred.get_image_embedding() - off_pred.get_image_embedding()).abs().max().item()
    record("small", "(image embedding, BGR)", "embedding", d)
    assert d <= TOL


@pytest.mark.parametrize("cfg", SMALL_CONFIGS[1:3], ids=lambda c: c.name)
def test_early_feature_parity(official, official_checkpoint, cfg):
    """The second encoder output (HQ-SAM's "early" feature) is the output of the first global
    block."""
    off_model, model, _, _ = make_pair(official, official_checkpoint, cfg, seed=7)
    seen = {}
    block = off_model.image_encoder.blocks[cfg.encoder_global_attn_indexes[0]]
    handle = block.register_forward_hook(lambda mod, inp, out: seen.setdefault("early", out))
    frame = image_to_frame(random_image(150, 220, seed=3), cfg.image_size)[None]
    with torch.no_grad():
        emb_o = off_model.image_encoder(frame)
        emb, early = model.image_encoder(frame)
    handle.remove()
    d = (early - seen["early"]).abs().max().item()
    record("small", "(early feature)", "embedding", d)
    assert early.shape == (1, cfg.grid_size, cfg.grid_size, cfg.encoder_embed_dim)
    assert d <= TOL and (emb - emb_o).abs().max().item() <= TOL


@pytest.mark.parametrize("multimask", [True, False])
def test_batched_forward_matches_official_per_image(official, official_checkpoint, multimask):
    """Sam.forward on a batch of 2 images, each with its own prompts, against the official predictor
    per image."""
    cfg = SMALL_CONFIGS[1]
    off_model, model, off_pred, _ = make_pair(official, official_checkpoint, cfg, seed=11)
    S, G = cfg.image_size, cfg.grid_size
    images = [random_image(300, 200, seed=21), random_image(97, 181, seed=22)]
    rng = np.random.default_rng(0)
    cases = {
        "batched: points (padded)": lambda h, w, i: dict(
            point_coords=rng.uniform(0, 1, (3, 2)) * [w, h],
            point_labels=np.array([[1, 0, 1], [1, -1, -1]][i]),
        ),
        "batched: box": lambda h, w, i: dict(box=np.array([0.1 * w, 0.2 * h, 0.7 * w, 0.9 * h])),
        "batched: box + points + mask": lambda h, w, i: dict(
            point_coords=rng.uniform(0, 1, (2, 2)) * [w, h],
            point_labels=np.array([1, 0]),
            box=np.array([0.2 * w, 0.1 * h, 0.9 * w, 0.6 * h]),
            mask_input=rng.normal(0, 3, (1, 4 * G, 4 * G)).astype(np.float32),
        ),
    }
    frames = torch.stack([image_to_frame(im, S) for im in images])
    for case, make in cases.items():
        kwargs = [make(*im.shape[:2], i) for i, im in enumerate(images)]
        expected = []
        for im, kw in zip(images, kwargs):
            off_pred.set_image(im)
            _, iou_o, low_o = off_pred.predict(**kw, multimask_output=multimask, return_logits=True)
            expected.append((low_o, iou_o))
        batch = {}
        if "point_coords" in kwargs[0]:
            batch["points"] = torch.tensor(
                np.stack(
                    [
                        scale_coords(kw["point_coords"], im.shape[:2], S)
                        for im, kw in zip(images, kwargs)
                    ]
                ),
                dtype=torch.float32,
            )
            batch["point_labels"] = torch.tensor(np.stack([kw["point_labels"] for kw in kwargs]))
        if "box" in kwargs[0]:
            batch["boxes"] = torch.tensor(
                np.stack(
                    [
                        scale_coords(kw["box"].reshape(2, 2), im.shape[:2], S).reshape(4)
                        for im, kw in zip(images, kwargs)
                    ]
                ),
                dtype=torch.float32,
            )
        if "mask_input" in kwargs[0]:
            batch["mask_inputs"] = torch.tensor(np.stack([kw["mask_input"] for kw in kwargs]))
        with torch.no_grad():
            low, iou = model(frames, **batch, multimask_output=multimask)
        for i, (low_o, iou_o) in enumerate(expected):
            d_low = np.abs(low[i].numpy() - low_o).max()
            d_iou = np.abs(iou[i].numpy() - iou_o).max()
            record("small", case, "low-res logits", d_low)
            record("small", case, "IoU scores", d_iou)
            assert d_low <= TOL and d_iou <= TOL, f"{case}, image {i}: {d_low:.2e} {d_iou:.2e}"


def test_predictor_parity_vit_b(official, official_checkpoint):
    """The real ViT-B size (1024 px frames, 64x64 tokens, window 14 padded to 70): one image, a few
    prompts.

    About 1 minute on 2 CPU cores, nearly all of it the two image encoders.
    """
    _, _, off_pred, pred = make_pair(
        official, official_checkpoint, SAM_VARIANTS["vit_b"], seed=2023
    )
    cases = [("point", True), ("points + negative", False), ("box + points + mask_input", False)]
    with torch_threads(DEFAULT_THREADS):  # big matmuls: worth every core
        compare_image("vit_b", off_pred, pred, random_image(360, 480, seed=5), cases)

# ----------------------------------------------------------------------------------------------
# Property tests on the tiny SAM: shapes and consistency
# ----------------------------------------------------------------------------------------------

CFG = SAM_VARIANTS["tiny"]
S, LOW = CFG.image_size, 4 * CFG.grid_size  # frame side, low-res mask side
FAST = settings(max_examples=20, deadline=None)



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
