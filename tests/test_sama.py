"""The SAMA modules: shapes, freezing, task separation, the SAM baseline, the predictor's cache."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import sama_maps
from hypothesis import given, settings
from hypothesis import strategies as st

import sam
import sama
from losses import matting_loss, seg_loss
from predictor import Predictor
from sam import SAM_VARIANTS, Sam, SamPredictor, image_to_frame, postprocess_masks
from sama import SAMA, TASKS, SamaPredictor

CFG = SAM_VARIANTS["tiny"]
S, G = CFG.image_size, CFG.grid_size


def randomized_sam(seed: int = 0) -> Sam:
    """A tiny SAM with every tensor random (pos_embed and rel_pos included)."""
    torch.manual_seed(seed)
    sam = Sam(CFG)
    with torch.no_grad():
        for name, p in sam.state_dict().items():
            p.copy_(
                torch.randn_like(p) * 0.1
                + (1.0 if name.endswith("norm1.weight") or name.endswith("norm2.weight") else 0.0)
            )
    return sam


def batch(B: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(B, 3, S, S, generator=g)
    images_local = torch.randn(B, 3, 2 * S, 2 * S, generator=g)
    boxes = torch.tensor([[20.0, 30.0, 200.0, 220.0]]).repeat(B, 1)
    target = torch.zeros(B, 1, S, S)
    target[:, :, 40:200, 30:190] = 1.0
    return images, images_local, boxes, target


SWITCHES = [(True, True), (True, False), (False, True), (False, False)]


@settings(max_examples=12, deadline=None)
@given(
    B=st.integers(1, 3),
    n_points=st.integers(0, 5),
    use_box=st.booleans(),
    use_mask=st.booleans(),
    switches=st.sampled_from(SWITCHES),
)
def test_forward_shapes(B, n_points, use_box, use_mask, switches):
    model = SAMA(Sam(CFG), *switches)
    images, images_local, boxes, _ = batch(B)
    points = torch.rand(B, n_points, 2) * S if n_points else None
    labels = torch.randint(0, 2, (B, n_points)) if n_points else None
    masks = torch.randn(B, 1, 4 * G, 4 * G) if use_mask else None
    out = model(images, images_local, points, labels, boxes if use_box else None, masks)
    assert out["seg_logits"].shape == (B, 1, 8 * G, 8 * G)
    assert out["alpha"].shape == (B, 1, 8 * G, 8 * G)
    assert out["sam_logits"].shape == (B, 1, 4 * G, 4 * G)
    assert 0.0 <= out["alpha"].min() and out["alpha"].max() <= 1.0


@settings(max_examples=10, deadline=None)
@given(
    h=st.integers(8, 400),
    w=st.integers(8, 400),
    switches=st.sampled_from(SWITCHES),
    n_points=st.integers(0, 3),
)
def test_predictor_shapes_any_image_size(h, w, switches, n_points):
    predictor = Predictor(SAMA(Sam(CFG), *switches), TASKS)
    rng = np.random.default_rng(h * 1000 + w)
    predictor.set_image(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    points = rng.uniform(0, [w, h], (n_points, 2)) if n_points else None
    labels = np.ones(n_points) if n_points else None
    box = np.array([0, 0, w - 1, h - 1]) if (n_points == 0 or h % 2) else None
    out = predictor.predict(points, labels, box)
    mask, alpha, sam_mask = out["mask"], out["alpha"], out["sam"]
    assert mask.shape == alpha.shape == sam_mask.shape == (h, w)
    assert mask.dtype == bool and sam_mask.dtype == bool and alpha.dtype == np.float32
    assert 0.0 <= alpha.min() and alpha.max() <= 1.0


def test_switches_remove_modules():
    sam = Sam(CFG)
    keys = {sw: set(SAMA(sam, *sw).state_dict()) for sw in SWITCHES}
    assert any(k.startswith("mvle.") for k in keys[(True, True)])
    assert any(k.startswith("local_adapters.") for k in keys[(True, True)])
    assert not any(k.startswith("mvle.") for k in keys[(False, True)])
    assert not any(k.startswith("local_adapters.") for k in keys[(True, False)])
    assert not any(k.startswith(("mvle.", "local_adapters.")) for k in keys[(False, False)])


@pytest.mark.parametrize("use_mvle", [True, False])
def test_early_features_come_from_the_view_of_the_local_tokens(use_mvle):
    """With MVLE, F_early on the local grid is the four local views' own early features, stitched
    in place; without it, the global view's, through the learned x2 up-sampling. The heads' detail
    path starts from that map: (B, C/8) channels at 4G and 8G."""
    model = SAMA(randomized_sam(), use_mvle, True).eval()
    images, images_local, _, _ = batch(2)
    seen = {}
    model.early_proj.register_forward_hook(lambda m, inp, out: seen.update(inp=inp[0], out=out))
    with torch.no_grad():
        features = model.encode(images, images_local if use_mvle else None)
        if use_mvle:
            views = sama.split_quadrants(images_local).transpose(1, 2)  # (B, 4, 3, S, S)
            early = torch.stack([model.sam.image_encoder(v)[1] for v in views])  # (B, 4, G, G, D)
            expected = sama.stitch_quadrants(early.permute(0, 4, 1, 2, 3))  # (B, D, 2G, 2G)
        else:
            expected = model.sam.image_encoder(images)[1].permute(0, 3, 1, 2)  # (B, D, G, G)
    torch.testing.assert_close(seen["inp"], expected, rtol=1e-5, atol=1e-5)
    C = CFG.prompt_embed_dim
    assert seen["out"].shape == (2, C, 2 * G, 2 * G)
    assert features.early_4G.shape == (2, C // 8, 4 * G, 4 * G)
    assert features.early_8G.shape == (2, C // 8, 8 * G, 8 * G)
    # the detail path is what the heads add: zeroing it changes the output
    with torch.no_grad():
        before = model.decode(features, "seg", boxes=torch.tensor([[20.0, 30, 200, 220]] * 2))
        features.early_8G.zero_()
        after = model.decode(features, "seg", boxes=torch.tensor([[20.0, 30, 200, 220]] * 2))
    assert (before - after).abs().max() > 1e-3


def test_the_other_reading_of_without_mvle_keeps_the_local_views_without_attention():
    """mvle_attention=False: F_local = F^L (the four local views' features, stitched in place,
    standing for F'^P) + F_early, computed by hand; no MVLE weights, the local views' F_early."""
    model = SAMA(randomized_sam(), True, True, mvle_attention=False).eval()
    assert model.mvle is None and model.config["mvle_attention"] is False
    assert not any(k.startswith("mvle.") for k in model.state_dict())
    images, images_local, _, _ = batch(2)
    with torch.no_grad():
        features = model.encode(images, images_local)
        views = sama.split_quadrants(images_local).transpose(1, 2)  # (B, 4, 3, S, S)
        encoded = [model.sam.image_encoder(v) for v in views]
        F_L = torch.stack([f for f, _ in encoded])  # (B, 4, C, G, G)
        early = torch.stack([e for _, e in encoded]).permute(0, 1, 4, 2, 3)  # (B, 4, D, G, G)
        F_early = model.early_proj(sama.stitch_quadrants(early.transpose(1, 2)))
        expected = sama.stitch_quadrants(F_L.transpose(1, 2)) + F_early  # (B, C, 2G, 2G)
    got = sama.from_windows(features.F_local, sama.ADAPTER_WINDOWS, 2 * G, 2 * G)
    torch.testing.assert_close(got.permute(0, 3, 1, 2), expected, rtol=1e-5, atol=1e-5)
    # without MVLE at all the switch has nothing to remove: the model is the --no-mvle one
    assert SAMA(randomized_sam(), False, True, mvle_attention=False).config["mvle_attention"]


def test_trainable_parameters_counted_by_hand():
    """What SAMA adds to ViT-B, each module counted from its layers' shapes (C = 256, D = 768,
    attention width C/2, MLPs as HQ-SAM's); its share of SAM stays under the paper's 1.8%."""
    with torch.device("meta"):
        model = SAMA(Sam(SAM_VARIANTS["vit_b"]))
    C, D, c8, c16 = 256, 768, 32, 16

    def attention(width):  # q, k, v, out projections with biases (SAM's Attention)
        return 3 * (C * width + width) + width * C + C

    mvle = 4 * attention(C // 2) + 2 * C
    early_proj = D * C + C + 2 * C  # 1x1 conv with bias, LayerNorm2d
    early_up = (C * c8 * 4 + c8) + 2 * c8 + (c8 * c8 * 4 + c8)  # two 2x2 transposed convs, LN
    adapter = 2 * attention(C // 2) + 2 * C + (C + 1)  # two attentions, LayerNorm, confidence
    mlp = (C * C + C) * 2 + (C * c16 + c16)  # the token's 3-layer MLP
    head = (C * c8 + 2 * c8) + (c8 * c8 * 9 + 2 * c8) + (c8 * c16 * 9 + 2 * c16) + mlp
    tokens = 2 * C
    expected = mvle + early_proj + early_up + 2 * adapter + tokens + 2 * head
    trainable = sum(p.numel() for name, p in model.named_parameters()
                    if not name.startswith("sam."))
    assert trainable == expected
    assert trainable / sum(p.numel() for p in model.sam.parameters()) < 0.018


def zero_gradient_by_design(model: SAMA, name: str) -> bool:
    """Trainable tensors whose gradient is exactly zero in exact arithmetic, whatever the data.

    A key projection's bias adds one constant to all of a query's scores, which the softmax ignores.
    A bias added to the local tokens after their last normalisation (the last Local-Adapter's
    LayerNorm; without adapters, MVLE's) reaches the heads only through their bias-free 1x1 conv
    and a BatchNorm in training mode, which subtracts any constant per channel (in eval mode, with
    running statistics, it counts). F_early's LayerNorm bias is not one: it also reaches the heads
    through the learned up-sampling (SAMA.early_up).
    """
    if model.local_adapters is not None:
        last = {f"local_adapters.{len(model.local_adapters) - 1}.norm.bias"}
    else:
        last = {"mvle.norm.bias"}
    return name.endswith("k_proj.bias") or name in last


@pytest.mark.parametrize("switches", SWITCHES)
def test_optimizer_step_changes_only_trainable_tensors(switches):
    model = SAMA(randomized_sam(), *switches)
    model.train()
    sam_before = {k: v.clone() for k, v in model.sam.state_dict().items()}
    images, images_local, boxes, target = batch(2)
    out = model(images, images_local, boxes=boxes)
    loss = (
        seg_loss(out["seg_logits"], target[:, :, ::2, ::2])[0]
        + matting_loss(out["alpha"], target[:, :, ::2, ::2])[0]
    )
    # SAM's tensors included: they must not move
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    opt.zero_grad()
    loss.backward()
    typical = np.median(
        [p.grad.abs().max().item() for p in model.parameters() if p.grad is not None]
    )
    for name, p in model.named_parameters():
        if name.startswith("sam."):
            assert not p.requires_grad and p.grad is None, name
        elif zero_gradient_by_design(model, name):  # only rounding noise reaches them
            assert p.grad.abs().max() < 1e-4 * typical, f"{name}: {p.grad.abs().max():.1e}"
        else:
            assert p.requires_grad, name
            assert p.grad is not None and p.grad.abs().max() > 1e-4 * typical, (
                f"{name} received no gradient"
            )
    trainable_before = {n: p.clone() for n, p in model.named_parameters() if p.requires_grad}
    opt.step()
    for k, v in model.sam.state_dict().items():
        assert torch.equal(v, sam_before[k]), f"frozen tensor sam.{k} changed"
    moved = [
        n
        for n, p in model.named_parameters()
        if p.requires_grad and not torch.equal(p, trainable_before[n])
    ]
    assert len(moved) == len(trainable_before)


@pytest.mark.parametrize("task", sama.TASKS)
def test_one_task_loss_gives_no_gradient_to_the_other_head_and_token(task):
    model = SAMA(randomized_sam())
    images, images_local, boxes, target = batch(2)
    out = model(images, images_local, boxes=boxes, tasks=(task,))
    if task == "seg":
        loss = seg_loss(out["seg_logits"], target[:, :, ::2, ::2])[0]
    else:
        loss = matting_loss(out["alpha"], target[:, :, ::2, ::2])[0]
    loss.backward()
    t, other = sama.TASKS.index(task), 1 - sama.TASKS.index(task)
    token_grad = model.sama_tokens.weight.grad
    assert token_grad[t].abs().sum() > 0 and torch.all(token_grad[other] == 0)
    for p in model.heads[other].parameters():
        assert p.grad is None or torch.all(p.grad == 0)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.heads[t].parameters())


def test_sam_baseline_is_plain_sam():
    sam = randomized_sam()
    model = SAMA(sam)
    images, images_local, boxes, _ = batch(2)
    points = torch.tensor([[[60.0, 70.0], [150.0, 160.0]]]).repeat(2, 1, 1)
    labels = torch.tensor([[1, 0]]).repeat(2, 1)
    with torch.no_grad():
        out = model(images, images_local, points, labels, boxes)
        expected, _ = sam(images, points, labels, boxes)
    assert torch.equal(out["sam_logits"], expected)

    # and the predictor's SAM mask is the SAM predictor's single mask
    image = np.random.default_rng(0).integers(0, 256, (180, 240, 3), dtype=np.uint8)
    box = np.array([30, 20, 200, 150])
    sama_predictor, sam_predictor = Predictor(model, TASKS), SamPredictor(sam)
    sama_predictor.set_image(image)
    sam_predictor.set_image(image)
    sam_mask = sama_predictor.predict(box=box)["sam"]
    masks, _, _ = sam_predictor.predict(box=box, multimask_output=False)
    assert np.array_equal(sam_mask, masks[0])


def test_predictor_equals_batched_forward_and_caches_the_encoder():
    model = SAMA(randomized_sam()).eval()
    calls = []
    model.sam.image_encoder.register_forward_hook(lambda *_: calls.append(1))
    image = np.random.default_rng(1).integers(0, 256, (150, 230, 3), dtype=np.uint8)
    predictor = SamaPredictor(model)
    predictor.set_image(image)
    encoder_calls = len(calls)
    assert encoder_calls == 1  # the five views in one batch

    box = np.array([20, 10, 180, 140])
    maps = sama_maps(predictor, box=box)
    mask, alpha = maps["seg_logits"] > 0, maps["alpha"]
    alpha2 = sama_maps(predictor, np.array([[100, 70]]), np.array([1]))["alpha"]
    assert len(calls) == encoder_calls, "a prompt re-ran the image encoder"

    frame, local = image_to_frame(image, S)[None], image_to_frame(image, 2 * S)[None]
    box_frame = torch.tensor(
        sam.scale_coords(box.reshape(2, 2), image.shape[:2], S).reshape(1, 4), dtype=torch.float32
    )
    with torch.no_grad():
        out = model(frame, local, boxes=box_frame)
    input_size = sam.preprocess_shape(*image.shape[:2], S)
    seg = postprocess_masks(out["seg_logits"], S, input_size, image.shape[:2])[0, 0].numpy()
    a = postprocess_masks(out["alpha"], S, input_size, image.shape[:2])[0, 0].numpy()
    np.testing.assert_array_equal(mask, seg > 0)
    np.testing.assert_allclose(alpha, a, atol=1e-6)
    assert not np.array_equal(alpha, alpha2)  # a different prompt, a different answer


@pytest.mark.parametrize("tasks", [(), ("segmentation",), ("seg", "alpha")])
def test_sama_predictor_refuses_tasks_it_has_no_head_for(tasks):
    with pytest.raises(ValueError, match="non-empty subset"):
        SamaPredictor(SAMA(randomized_sam()), tasks)


def test_quadrants_and_windows_round_trip():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    q = sama.split_quadrants(x)
    assert q.shape == (2, 3, 4, 4, 4)
    assert torch.equal(q[:, :, 1], x[:, :, :4, 4:])  # m = 1 is the top-right quadrant
    assert torch.equal(q[:, :, 2], x[:, :, 4:, :4])
    assert torch.equal(sama.stitch_quadrants(q), x)
    tokens = x.permute(0, 2, 3, 1)  # (2, 8, 8, 3) channels last
    w = sama.to_windows(tokens, 2)
    assert w.shape == (8, 16, 3)
    # window 1 of image 0, tokens row-major
    assert torch.equal(w[1].T.reshape(3, 4, 4), x[0, :, :4, 4:])
    assert torch.equal(sama.from_windows(w, 2, 8, 8), tokens)


@pytest.mark.parametrize("block", [2**30, 2 * 2 * 64 * 64, 2 * 8 * 64 * 3, 1])
def test_blockwise_attention_equals_the_textbook_form(monkeypatch, block):
    """Attention.blockwise (PyTorch's fused kernel, the bias built a few images or query rows at a
    time) equals softmax((q * scale) k^T + bias) v computed whole."""
    torch.manual_seed(0)
    attn = sam.Attention(32, 2, (8, 8))
    with torch.no_grad():
        attn.rel_pos_h.normal_()
        attn.rel_pos_w.normal_()
    x = torch.randn(5, 8, 8, 32)
    attn.form = "textbook"
    textbook = attn(x)
    attn.form = "blockwise"
    # all five images in one block; 2 + 2 + 1 images; 3 + 3 + 2 rows per image; one row
    monkeypatch.setattr(sam.Attention, "BIAS_BLOCK", {"cpu": block})
    torch.testing.assert_close(attn(x), textbook, rtol=0, atol=1e-5)


@pytest.mark.parametrize("grid", [(8, 8), (6, 10), (14, 14)])
def test_folded_attention_equals_the_textbook_form(grid):
    """Attention's "folded" form (the bias folded into q and k, no bias tensor) gives the textbook
    form's outputs and gradients, on square and non-square grids and head sizes that need padding;
    the CPU default stays blockwise, CUDA's is folded."""
    torch.manual_seed(0)
    attn = sam.Attention(24, 2, grid)  # head size 12: 12 + h + w is no multiple of 8 for (6, 10)
    with torch.no_grad():
        attn.rel_pos_h.normal_()
        attn.rel_pos_w.normal_()
    x = torch.randn(3, *grid, 24)
    outputs, grads = {}, {}
    for form in ("textbook", "folded"):
        attn.form = form
        attn.zero_grad()
        outputs[form] = attn(x)
        outputs[form].square().sum().backward()
        grads[form] = [p.grad.clone() for p in attn.parameters()]
    torch.testing.assert_close(outputs["folded"], outputs["textbook"], rtol=0, atol=1e-5)
    for folded, textbook in zip(grads["folded"], grads["textbook"]):
        torch.testing.assert_close(folded, textbook, rtol=1e-4, atol=1e-4)
    attn.form = None  # the device's form: blockwise on the CPU, folded on CUDA
    assert "cpu" not in sam.Attention.DEVICE_FORM and sam.Attention.DEVICE_FORM["cuda"] == "folded"
    torch.testing.assert_close(attn(x), outputs["textbook"], rtol=0, atol=1e-5)
    attn.form = "fast"
    with pytest.raises(ValueError, match="Attention.form must be one of"):
        attn(x)


def test_local_adapter_attends_within_its_window_only():
    """Local attention: changing the local tokens of one window changes F'_out in that window and
    nowhere else; the first output equals F_out plus the confidence-gated Eq. (7) (Eqs. 8-9)."""
    torch.manual_seed(0)
    C, n, G = 64, sama.ADAPTER_WINDOWS, 16
    adapter = sama.LocalAdapter(C, 4)
    F_out = torch.randn(1, G * G, C)
    F_local = torch.randn(n * n, (2 * G // n) ** 2, C)
    pe_out, pe_local = (
        torch.randn(n * n, (G // n) ** 2, C),
        torch.randn(n * n, (2 * G // n) ** 2, C),
    )
    with torch.no_grad():
        out, local = adapter(F_out, F_local, pe_out, pe_local)
        changed = F_local.clone()
        changed[5] += 1.0  # window 5: row 0, column 5 of the 8 x 8 windows
        out2, local2 = adapter(F_out, changed, pe_out, pe_local)
    diff = (out2 - out).abs().sum(-1).view(G, G) > 0
    expected = torch.zeros(G, G, dtype=torch.bool)
    expected[0:2, 10:12] = True  # window 5's decoder tokens: rows 0-1, columns 10-11
    assert torch.equal(diff, expected)
    assert torch.equal((local2 - local).abs().sum((1, 2)) > 0, torch.arange(n * n) == 5)
    # Eqs. (8)-(9) by hand on window 0's first token
    g2l = adapter.global_to_local
    with torch.no_grad():
        f = F_out[0, 0]
        q = g2l.q_proj(f + pe_out[0, 0])
        k, v = g2l.k_proj(F_local[0] + pe_local[0]), g2l.v_proj(F_local[0])
        heads = 4
        qh, kh, vh = (
            q.view(heads, -1),
            k.view(-1, heads, q.shape[0] // heads),
            v.view(-1, heads, q.shape[0] // heads),
        )
        att = torch.softmax(torch.einsum("hc,thc->ht", qh, kh) / (qh.shape[-1] ** 0.5), dim=-1)
        F2 = g2l.out_proj(torch.einsum("ht,thc->hc", att, vh).reshape(-1))
        expected_token = f + torch.sigmoid(adapter.confidence(f)) * F2
    torch.testing.assert_close(out[0, 0], expected_token, rtol=0, atol=1e-5)


@pytest.mark.parametrize("switches", [(True, True), (False, True), (True, False)])
def test_fast_prompt_equals_the_textbook_form(monkeypatch, switches):
    """SAMA.fast_prompt (the first adapter's projections of F_local from the image's cache, the
    heads' 1x1 convolution at G) gives the textbook form's maps within float rounding, for
    points, a box and both; and it does read the cache (a cache altered changes its answer)."""
    torch.manual_seed(0)
    model = SAMA(randomized_sam(), *switches).eval()
    with torch.no_grad():
        for module in model.heads.modules():  # BatchNorm's statistics away from 0 and 1 too
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-1, 1)
                module.running_var.uniform_(0.5, 2)
    image = np.random.default_rng(3).integers(0, 256, (150, 230, 3), dtype=np.uint8)
    predictor = SamaPredictor(model)
    predictor.set_image(image)
    prompts = [dict(box=np.array([20, 10, 180, 140])),
               dict(points=np.array([[100, 70], [30, 40]]), labels=np.array([1, 0])),
               dict(points=np.array([[100, 70]]), labels=np.array([1]),
                    box=np.array([20, 10, 180, 140]))]
    for prompt in prompts:
        maps = {}
        for fast in (True, False):
            monkeypatch.setattr(SAMA, "fast_prompt", fast)
            maps[fast] = sama_maps(predictor, **prompt)
        for name in ("seg_logits", "alpha", "sam_logits"):
            scale = max(1.0, np.abs(maps[False][name]).max())
            np.testing.assert_allclose(maps[True][name], maps[False][name], rtol=0,
                                       atol=1e-5 * scale, err_msg=name)
    if model.local_adapters is not None:
        monkeypatch.setattr(SAMA, "fast_prompt", True)
        with torch.inference_mode():
            predictor.features.V_A.add_(1)
        altered = sama_maps(predictor, **prompts[2])["seg_logits"]
        assert np.abs(altered - maps[True]["seg_logits"]).max() > 100 * 1e-5  # 100x the rounding


def test_predictors_under_bf16_autocast_return_float32_arrays():
    """bf16 autocast (the CUDA setting; the CPU has it too) must not leak bf16 into the numpy
    outputs."""
    model = SAMA(randomized_sam()).eval()
    image = np.random.default_rng(2).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    box = np.array([20, 15, 140, 100])
    sama_predictor, sam_predictor = Predictor(model, TASKS), SamPredictor(model.sam)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        sama_predictor.set_image(image)
        sam_predictor.set_image(image)
        out = sama_predictor.predict(box=box)
        mask, alpha, sam_mask = out["mask"], out["alpha"], out["sam"]
        masks, scores, low_res = sam_predictor.predict(box=box)
    assert mask.shape == alpha.shape == sam_mask.shape == masks.shape[1:] == (120, 160)
    assert alpha.dtype == scores.dtype == low_res.dtype == np.float32
    assert mask.dtype == sam_mask.dtype == masks.dtype == bool


def test_keep_freed_cpu_memory_reuses_large_blocks():
    """A chain of 64 MB activations, each freed once the next exists, run twice: by default glibc
    unmaps every block and the kernel faults in (and zeroes) fresh pages each time; with the setting
    the second run reuses the first one's memory."""
    if not sys.platform.startswith("linux"):
        pytest.skip("glibc's allocator only")
    script = """
import resource, sys, torch
from predictor import keep_freed_cpu_memory
if sys.argv[1] == "keep":
    keep_freed_cpu_memory()
def forward():
    x = torch.ones(2**24)
    for _ in range(8):
        x = x * 1.5 + 1.0
forward()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
forward()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
    faults = {
        mode: int(
            subprocess.run(
                [sys.executable, "-c", script, mode],
                capture_output=True,
                text=True,
                check=True,
                cwd=Path(sama.__file__).parent,
            ).stdout
        )
        for mode in ("keep", "default")
    }
    assert faults["default"] >= 100, faults  # 17 blocks of 16,384 pages (fewer with huge pages)
    # seen: 0, or one block when the heap is fragmented
    assert faults["keep"] * 4 < faults["default"], faults
