"""The CUDA paths: the same answers on the GPU as on the CPU, bf16 training that keeps SAM frozen,
train.py end to end on the GPU. Skipped without a GPU (CI has none); run them where one is lent."""

import json

import numpy as np
import pytest
import torch
from conftest import build_official_sam, randomize_, sama_maps
from test_sama import batch, randomized_sam

import foreground
import sam
import train
from losses import matting_loss, seg_loss
from miniature import synthetic
from sama import SAMA, SamaPredictor

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
CUDA = torch.device("cuda")


@pytest.fixture(autouse=True)
def full_float32():
    """TF32 would round float32 matmuls and convolutions to 10-bit mantissas: compare in real
    float32."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def test_foreground_estimate_on_cuda_equals_cpu():
    """foreground.py on the GPU: the CPU's numbers (the sweep's order and precisions are the
    same), and the same cutout bytes (predict.py and the web page estimate on the GPU)."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (70, 90, 3), dtype=np.uint8)
    y, x = np.mgrid[:70, :90]
    alpha = np.clip(1.5 - np.hypot(y - 35, x - 45) / 20, 0, 1).astype(np.float32)
    args = torch.from_numpy(image) / 255, torch.from_numpy(alpha)
    cpu = foreground.estimate_foreground(*args)
    gpu = foreground.estimate_foreground(*(a.to(CUDA) for a in args))
    for a, b in zip(cpu, gpu):
        torch.testing.assert_close(b.cpu(), a, rtol=0, atol=1e-5)
    assert np.abs(foreground.cutout(image, alpha, "cuda").astype(int)
                  - foreground.cutout(image, alpha, "cpu")).max() <= 1


def test_forward_on_cuda_equals_cpu():
    model = SAMA(randomized_sam()).eval()
    images, images_local, boxes, _ = batch(2)
    with torch.no_grad():
        cpu = model(images, images_local, boxes=boxes)
        gpu = model.to(CUDA)(images.to(CUDA), images_local.to(CUDA), boxes=boxes.to(CUDA))
    for key in ("sam_logits", "seg_logits", "alpha"):
        torch.testing.assert_close(gpu[key].cpu(), cpu[key], rtol=1e-4, atol=1e-4, msg=key)


def test_predictor_on_cuda_equals_cpu():
    image = np.random.default_rng(3).integers(0, 256, (190, 260, 3), dtype=np.uint8)
    box = np.array([30, 20, 220, 170])
    results = []
    for device in ("cpu", CUDA):
        predictor = SamaPredictor(SAMA(randomized_sam()).to(device).eval())
        predictor.set_image(image)
        results.append(sama_maps(predictor, box=box))
    for name, cpu in results[0].items():
        np.testing.assert_allclose(results[1][name], cpu, rtol=1e-4, atol=1e-4)


def test_bf16_training_step_on_cuda_keeps_sam_frozen():
    model = SAMA(randomized_sam()).to(CUDA).train()
    sam_before = {k: v.clone() for k, v in model.sam.state_dict().items()}
    images, images_local, boxes, target = (t.to(CUDA) for t in batch(2))
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = model(images, images_local, boxes=boxes)
    assert out["seg_logits"].dtype == torch.bfloat16  # autocast reached the heads
    small = target[:, :, ::2, ::2]
    loss = (
        seg_loss(out["seg_logits"].float(), small)[0] + matting_loss(out["alpha"].float(), small)[0]
    )
    loss.backward()
    assert torch.isfinite(loss)
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, (
                name
            )
    opt.step()
    for k, v in model.sam.state_dict().items():
        assert torch.equal(v, sam_before[k]), f"frozen tensor sam.{k} changed"


def test_train_py_on_cuda(tmp_path, monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    synthetic.make_toy(
        tmp_path / "toy", seed=0, n_train=4, n_val=2, n_test=0, n_fg=4, n_comp=0, n_aim500=2, n_bg=2
    )
    toy, out = tmp_path / "toy", tmp_path / "run"
    code = train.main(
        [
            "--model",
            "tiny",
            "--data",
            str(toy / "DIS5K"),
            "--matting",
            str(toy / "AIM"),
            "--backgrounds",
            str(toy / "backgrounds"),
            "--batch-size",
            "2",
            "--workers",
            "2",
            "--max-steps",
            "3",
            "--log-every",
            "1",
            "--val-every",
            "3",
            "--val-images",
            "2",
            "--warmup-steps",
            "1",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    steps = [r for r in records if "s_per_step" in r]
    assert len(steps) == 3 and all(
        np.isfinite(r["seg"]) and np.isfinite(r["matting"]) and r["peak_mem_mb"] > 0 for r in steps
    )
    assert any("val_maxF" in r for r in records)  # validation ran on the GPU model
    assert (out / "sama.pt").is_file() and (out / "last.pt").is_file()


@pytest.mark.parametrize("amp", [False, True])
def test_predictor_graphs_replay_what_eager_decoding_computes(amp):
    """Each prompt shape is captured once; a new image is copied under the captured graphs; every
    replay equals the eager decoder passes on the same features."""
    predictor = SamaPredictor(SAMA(randomized_sam()).to(CUDA).eval())
    rng = np.random.default_rng(4)
    images = [
        rng.integers(0, 256, (190, 260, 3), dtype=np.uint8),
        rng.integers(0, 256, (240, 180, 3), dtype=np.uint8),
    ]
    prompts = [
        dict(box=np.array([30, 20, 150, 170])),
        dict(points=np.array([[60, 70], [100, 90]]), labels=np.array([1, 0])),
    ]
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
        # a caller's inference_mode first, no_grad below: both must work
        predictor.set_image(images[1])
        sama_maps(predictor, **prompts[0])
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
        for image in images:
            predictor.set_image(image)  # enters inference_mode itself
            for prompt in prompts + prompts:
                with torch.inference_mode():  # as predict_torch does
                    tensors = sam.prompt_tensors(
                        prompt.get("points"),
                        prompt.get("labels"),
                        prompt.get("box"),
                        image.shape[:2],
                        predictor.model.sam.config.image_size,
                        CUDA,
                    )
                    replayed = [t.clone() for t in predictor._decode_graphed(tensors)]
                    for got, expected in zip(replayed, predictor._decode(tensors)):
                        torch.testing.assert_close(
                            got, expected, rtol=0, atol=1e-5 if not amp else 1e-2
                        )
            maps = sama_maps(predictor, **prompts[0])
            assert maps["seg_logits"].shape == maps["alpha"].shape == maps["sam_logits"].shape == (
                image.shape[:2])
    assert len(predictor.graphs) == 2  # one per prompt shape, kept across images


@pytest.mark.parametrize("amp", [False, True])
def test_attention_forms_on_cuda_equal_the_textbook_form(amp):
    """CUDA's default, the folded form (flash attention where it runs, bf16), and the blockwise
    form give the textbook outputs: global attention on ViT-H's 64 x 64 grid (head size 80) and a
    batch of 14 x 14 windows."""
    tolerance = dict(rtol=0, atol=3e-2) if amp else dict(rtol=0, atol=1e-5)
    for grid, batch_size in (((64, 64), 2), ((14, 14), 50)):
        torch.manual_seed(0)
        attn = sam.Attention(160, 2, grid).to(CUDA)
        with torch.no_grad():
            attn.rel_pos_h.normal_(0, 0.1)
            attn.rel_pos_w.normal_(0, 0.1)
        x = torch.randn(batch_size, *grid, 160, device=CUDA)
        outputs = {}
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            for form in sam.Attention.FORMS:
                attn.form = form
                outputs[form] = attn(x).float()
        for form in ("blockwise", "folded"):
            torch.testing.assert_close(outputs[form], outputs["textbook"], **tolerance, msg=form)


@pytest.mark.parametrize("amp", [False, True])
def test_encoder_on_cuda_equals_metas(amp):
    """Our ViT-B encoder (its CUDA form) against Meta's on the same random weights at 1024 px: in
    float32 within 1e-4; under bf16 autocast no further from Meta's float32 output than Meta's own
    bf16 output is, give or take a quarter."""
    cfg = sam.SAM_VARIANTS["vit_b"]
    meta = randomize_(build_official_sam(cfg), seed=0).to(CUDA)
    ours = sam.Sam(cfg).to(CUDA).eval()
    ours.load_state_dict(meta.state_dict())
    frame = torch.randn(1, 3, 1024, 1024, device=CUDA)
    with torch.no_grad():
        reference = meta.image_encoder(frame)  # float32
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            theirs, got = meta.image_encoder(frame).float(), ours.image_encoder(frame)[0].float()
    if amp:
        their_error = (theirs - reference).abs().max().item()
        assert (got - reference).abs().max().item() <= 1.25 * their_error
    else:
        torch.testing.assert_close(got, reference, rtol=0, atol=1e-4)


def test_compiled_encoder_on_cuda_equals_eager():
    """sam.compile_image_encoder (Inductor) gives the eager encoder's outputs, in float32 and under
    bf16 autocast, and keeps the state dict's keys."""
    model = SAMA(randomized_sam()).to(CUDA).eval()
    keys = list(model.state_dict())
    frames = torch.randn(5, 3, model.sam.config.image_size, model.sam.config.image_size,
                         device=CUDA)
    with torch.no_grad():
        eager = [model.sam.image_encoder(frames)[0]]
        with torch.autocast("cuda", dtype=torch.bfloat16):
            eager.append(model.sam.image_encoder(frames)[0].float())
        seconds = sam.compile_image_encoder(model.sam, 5)
        assert seconds > 0
        compiled = [model.sam.image_encoder(frames)[0]]
        with torch.autocast("cuda", dtype=torch.bfloat16):
            compiled.append(model.sam.image_encoder(frames)[0].float())
    assert list(model.state_dict()) == keys
    torch.testing.assert_close(compiled[0], eager[0], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(compiled[1], eager[1], rtol=0, atol=5e-2)
