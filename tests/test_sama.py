"""The SAMA modules: shapes, freezing, task separation, the SAM baseline, the predictor's cache."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import sam
import sama
from losses import matting_loss, seg_loss
from sam import SAM_VARIANTS, Sam, SamPredictor, image_to_frame, postprocess_masks
from sama import SAMA, SamaPredictor

CFG = SAM_VARIANTS["tiny"]
S, G = CFG.image_size, CFG.grid_size


def randomized_sam(seed: int = 0) -> Sam:
    """A tiny SAM with every tensor random (pos_embed and rel_pos included)."""
    torch.manual_seed(seed)
    sam = Sam(CFG)
    with torch.no_grad():
        for name, p in sam.state_dict().items():
            p.copy_(torch.randn_like(p) * 0.1 + (1.0 if name.endswith("norm1.weight") or name.endswith("norm2.weight") else 0.0))
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
@given(h=st.integers(8, 400), w=st.integers(8, 400), switches=st.sampled_from(SWITCHES), n_points=st.integers(0, 3))
def test_predictor_shapes_any_image_size(h, w, switches, n_points):
    predictor = SamaPredictor(SAMA(Sam(CFG), *switches))
    rng = np.random.default_rng(h * 1000 + w)
    predictor.set_image(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    points = rng.uniform(0, [w, h], (n_points, 2)) if n_points else None
    labels = np.ones(n_points) if n_points else None
    box = np.array([0, 0, w - 1, h - 1]) if (n_points == 0 or h % 2) else None
    mask, alpha, sam_mask = predictor.predict(points, labels, box)
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


def zero_gradient_by_design(model: SAMA, name: str) -> bool:
    """Trainable tensors whose gradient is exactly zero in exact arithmetic, whatever the data.

    A key projection's bias adds one constant to all of a query's scores, which the softmax ignores.
    A bias added to the local tokens after their last normalisation (the last Local-Adapter's
    LayerNorm; without adapters, MVLE's LayerNorm and F_early's) reaches the heads only through their
    bias-free 1x1 conv and a BatchNorm in training mode, which subtracts any constant per channel
    (in eval mode, with running statistics, it counts).
    """
    if model.local_adapters is not None:
        last = {f"local_adapters.{len(model.local_adapters) - 1}.norm.bias"}
    else:
        last = {"mvle.norm.bias", "early_proj.1.bias"}
    return name.endswith("k_proj.bias") or name in last


@pytest.mark.parametrize("switches", SWITCHES)
def test_optimizer_step_changes_only_trainable_tensors(switches):
    model = SAMA(randomized_sam(), *switches)
    model.train()
    sam_before = {k: v.clone() for k, v in model.sam.state_dict().items()}
    images, images_local, boxes, target = batch(2)
    out = model(images, images_local, boxes=boxes)
    loss = seg_loss(out["seg_logits"], target[:, :, ::2, ::2])[0] + matting_loss(out["alpha"], target[:, :, ::2, ::2])[0]
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)  # SAM's tensors included: they must not move
    opt.zero_grad()
    loss.backward()
    typical = np.median([p.grad.abs().max().item() for p in model.parameters() if p.grad is not None])
    for name, p in model.named_parameters():
        if name.startswith("sam."):
            assert not p.requires_grad and p.grad is None, name
        elif zero_gradient_by_design(model, name):  # only rounding noise reaches them
            assert p.grad.abs().max() < 1e-4 * typical, f"{name}: {p.grad.abs().max():.1e}"
        else:
            assert p.requires_grad, name
            assert p.grad is not None and p.grad.abs().max() > 1e-4 * typical, f"{name} received no gradient"
    trainable_before = {n: p.clone() for n, p in model.named_parameters() if p.requires_grad}
    opt.step()
    for k, v in model.sam.state_dict().items():
        assert torch.equal(v, sam_before[k]), f"frozen tensor sam.{k} changed"
    moved = [n for n, p in model.named_parameters() if p.requires_grad and not torch.equal(p, trainable_before[n])]
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
    sama_predictor, sam_predictor = SamaPredictor(model), SamPredictor(sam)
    sama_predictor.set_image(image)
    sam_predictor.set_image(image)
    _, _, sam_mask = sama_predictor.predict(box=box)
    masks, _, _ = sam_predictor.predict(box=box, multimask_output=False)
    assert np.array_equal(sam_mask, masks[0])


def test_first_decoder_layer_projections_are_the_same_for_every_prompt_without_a_mask():
    """What the predictors keep per image (Sam.first_layer_projections) gives SAM's decoder pass
    exactly, for points and for boxes; with a mask input the cache does not hold and is refused."""
    sam = randomized_sam(4).eval()
    images, _, boxes, _ = batch(1, seed=4)
    with torch.no_grad():
        embedding, _ = sam.image_encoder(images)
        cached = sam.first_layer_projections(embedding)
        points = dict(points=torch.tensor([[[60.0, 70.0], [150.0, 160.0]]]), point_labels=torch.tensor([[1, 0]]))
        for prompt in (dict(boxes=boxes), points):
            for multimask in (False, True):
                expected = sam.decode(embedding, **prompt, multimask_output=multimask)
                got = sam.decode(embedding, **prompt, multimask_output=multimask, first_layer_projections=cached)
                assert all(torch.equal(g, e) for g, e in zip(got, expected))
        with pytest.raises(ValueError, match="without a mask input"):
            sam.decode(embedding, boxes=boxes, mask_inputs=torch.zeros(1, 1, 4 * G, 4 * G), first_layer_projections=cached)


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
    mask, alpha, _ = predictor.predict(box=box)
    mask2, alpha2, _ = predictor.predict(point_coords=np.array([[100, 70]]), point_labels=np.array([1]))
    assert len(calls) == encoder_calls, "a prompt re-ran the image encoder"

    frame, local = image_to_frame(image, S)[None], image_to_frame(image, 2 * S)[None]
    box_frame = torch.tensor(sam.scale_coords(box.reshape(2, 2), image.shape[:2], S).reshape(1, 4), dtype=torch.float32)
    with torch.no_grad():
        out = model(frame, local, boxes=box_frame)
    input_size = sam.preprocess_shape(*image.shape[:2], S)
    seg = postprocess_masks(out["seg_logits"], S, input_size, image.shape[:2])[0, 0].numpy()
    a = postprocess_masks(out["alpha"], S, input_size, image.shape[:2])[0, 0].numpy()
    np.testing.assert_array_equal(mask, seg > 0)
    np.testing.assert_allclose(alpha, a, atol=1e-6)
    assert not np.array_equal(alpha, alpha2)  # a different prompt, a different answer


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
    assert torch.equal(w[1].T.reshape(3, 4, 4), x[0, :, :4, 4:])  # window 1 of image 0, tokens row-major
    assert torch.equal(sama.from_windows(w, 2, 8, 8), tokens)


def test_global_attention_in_blocks_equals_one_batch(monkeypatch):
    torch.manual_seed(0)
    attn = sam.Attention(32, 2, (8, 8))
    with torch.no_grad():
        attn.rel_pos_h.normal_()
        attn.rel_pos_w.normal_()
    x = torch.randn(5, 8, 8, 32)
    monkeypatch.setattr(sam, "ATTENTION_BIAS_BUDGET", {"cpu": 2**30})
    whole = attn(x)  # all five images in one block
    for budget in (2 * 2 * 64 * 64, 2 * 8 * 64 * 3, 1):  # 2 + 2 + 1 images; 3 + 3 + 2 rows per image; 1 row
        monkeypatch.setattr(sam, "ATTENTION_BIAS_BUDGET", {"cpu": budget})
        torch.testing.assert_close(attn(x), whole, rtol=0, atol=1e-5)


def test_adapter_projects_the_local_tokens_in_one_matmul_without_changing_the_result():
    """project_local(local, project_pe(pe)) equals the equations' (local + pe) W^{K_A}, local W^{V_A},
    (local + pe) W^Q, and gradients still reach every projection, biases included."""
    torch.manual_seed(0)
    adapter = sama.LocalAdapter(64, 4)
    local, pe = torch.randn(8, 16, 64), torch.randn(8, 16, 64)
    g2l, l2g = adapter.global_to_local, adapter.local_to_global
    expected = (g2l.k_proj(local + pe), g2l.v_proj(local), l2g.q_proj(local + pe))
    got = adapter.project_local(local, adapter.project_pe(pe))
    for e, g in zip(expected, got):
        torch.testing.assert_close(g, e, rtol=0, atol=1e-5)
    sum(g.square().sum() for g in got).backward()
    for proj in (g2l.k_proj, g2l.v_proj, l2g.q_proj):
        assert proj.weight.grad.abs().sum() > 0 and proj.bias.grad.abs().sum() > 0


def test_upscale_equals_sams_transposed_convolutions():
    """MaskDecoder.upscale (matmuls on tokens) equals output_upscaling run as SAM runs it, on a map."""
    dec = randomized_sam(3).mask_decoder
    src = torch.randn(2, G * G, CFG.prompt_embed_dim)
    with torch.no_grad():
        expected = dec.output_upscaling(src.transpose(1, 2).reshape(2, -1, G, G))
        torch.testing.assert_close(dec.upscale(src, G), expected, rtol=0, atol=1e-5)


def test_head_runs_its_pointwise_convs_where_they_are_cheapest_without_changing_the_result():
    torch.manual_seed(0)
    head = sama.PredictionHead(64).eval()
    for m in head.modules():
        if isinstance(m, torch.nn.BatchNorm2d):  # non-trivial statistics
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
    token, F_out, F_P, sam_up = torch.randn(2, 64), torch.randn(2, 64, 16, 16), torch.randn(2, 64, 32, 32), torch.randn(2, 8, 64, 64)
    local = sama.to_windows(F_P.permute(0, 2, 3, 1), sama.ADAPTER_WINDOWS)
    up = lambda x: torch.nn.functional.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)  # noqa: E731
    with torch.no_grad():  # the textbook order: up-sample, then conv + BN + GELU, on the stitched map
        x = head.refine(up(head.fuse(up(F_out) + F_P)) + sam_up)
        x = head.out(up(x))
        expected = (head.token_mlp(token)[:, None, :] @ x.flatten(2)).view(2, 1, 128, 128)
        torch.testing.assert_close(head(token, F_out.permute(0, 2, 3, 1), local, sam_up), expected, rtol=0, atol=1e-5)


def test_predictors_under_bf16_autocast_return_float32_arrays():
    """bf16 autocast (the CUDA setting; the CPU has it too) must not leak bf16 into the numpy outputs."""
    model = SAMA(randomized_sam()).eval()
    image = np.random.default_rng(2).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    box = np.array([20, 15, 140, 100])
    sama_predictor, sam_predictor = SamaPredictor(model), SamPredictor(model.sam)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        sama_predictor.set_image(image)
        sam_predictor.set_image(image)
        mask, alpha, sam_mask = sama_predictor.predict(box=box)
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
import predict
if sys.argv[1] == "keep":
    predict.keep_freed_cpu_memory()
def forward():
    x = torch.ones(2**24)
    for _ in range(8):
        x = x * 1.5 + 1.0
forward()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
forward()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
    faults = {mode: int(subprocess.run([sys.executable, "-c", script, mode], capture_output=True, text=True,
                                       check=True, cwd=Path(sama.__file__).parent).stdout) for mode in ("keep", "default")}
    assert faults["default"] >= 100, faults  # 17 blocks of 16,384 pages (fewer with huge pages)
    assert faults["keep"] * 4 < faults["default"], faults  # seen: 0, or one block when the heap is fragmented
