"""The CUDA paths: the same answers on the GPU as on the CPU, bf16 training that keeps SAM frozen,
train.py end to end on the GPU. Skipped without a GPU (CI has none); run them where one is lent."""

import json

import numpy as np
import pytest
import torch

import data
import sam
import train
from losses import matting_loss, seg_loss
from sama import SAMA, SamaPredictor
from test_sama import batch, randomized_sam

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
        results.append(predictor.predict(box=box, return_logits=True))
    for cpu, gpu in zip(*results):
        np.testing.assert_allclose(gpu, cpu, rtol=1e-4, atol=1e-4)


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
    data.make_toy(
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
        dict(point_coords=np.array([[60, 70], [100, 90]]), point_labels=np.array([1, 0])),
    ]
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
        # a caller's inference_mode first, no_grad below: both must work
        predictor.set_image(images[1])
        predictor.predict(**prompts[0])
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
        for image in images:
            predictor.set_image(image)  # enters inference_mode itself
            for prompt in prompts + prompts:
                with torch.inference_mode():  # as predict does
                    tensors = sam.prompt_tensors(
                        prompt.get("point_coords"),
                        prompt.get("point_labels"),
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
            mask, alpha, sam_mask = predictor.predict(**prompts[0])
            assert mask.shape == alpha.shape == sam_mask.shape == image.shape[:2]
    assert len(predictor.graphs) == 2  # one per prompt shape, kept across images
