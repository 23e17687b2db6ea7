"""benchmark.py's side-by-side runs: Meta's SAM is timed on our weights, and every row prints."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from benchmarks import benchmark

pytestmark = pytest.mark.usefixtures("one_thread")


def test_meta_predictor_runs_our_weights(official):
    """--meta times Meta's SAM on the very weights ours runs: same embedding, same masks."""
    sam, _ = benchmark.models("tiny", 256, torch.device("cpu"))
    with torch.no_grad():
        for p in sam.parameters():
            p.add_(torch.randn_like(p) * 0.02)  # no zero-initialised tensor left to hide a swap
    meta = benchmark.meta_predictor(sam)
    ours = benchmark.SamPredictor(sam)
    image, box = benchmark.test_image(256)
    for predictor in (meta, ours):
        predictor.set_image(image)
    torch.testing.assert_close(ours.features, meta.features, rtol=0, atol=1e-4)
    theirs = meta.predict(box=box, multimask_output=False, return_logits=True)[0]
    mine = ours.predict(box=box, multimask_output=False, return_logits=True)[0]
    np.testing.assert_allclose(mine, theirs, rtol=0, atol=1e-3)


def test_side_by_side_prints_every_row(official, capsys):
    benchmark.bench("tiny", 256, torch.device("cpu"), reps=1, dtype=torch.float32, with_meta=True)
    out = capsys.readouterr().out
    for row in ("per image : SAM", "the encoder alone", "per prompt: SAM", "multiply-adds",
                "peak memory", "Meta's SAM on the same weights"):
        assert row in out, row


def test_multiply_adds_counts_by_hand():
    """A (2, 4) @ (4, 3) linear layer: 24 multiply-adds; a 3x3 convolution of 2 -> 5 channels
    over 6 x 7 outputs: 9 * 2 * 5 * 42 = 3780; attention of 2 heads, 8 queries on 8 keys of 4
    channels: 2 * 8 * 8 * 4 for the scores and as many for the values, 1024; elementwise: none."""
    linear, conv = torch.nn.Linear(4, 3), torch.nn.Conv2d(2, 5, 3, padding=1)
    assert benchmark.multiply_adds(lambda: linear(torch.zeros(2, 4))) == 24
    assert benchmark.multiply_adds(lambda: conv(torch.zeros(1, 2, 6, 7))) == 3780
    q = torch.zeros(1, 2, 8, 4)
    assert benchmark.multiply_adds(lambda: F.scaled_dot_product_attention(q, q, q)) == 1024
    assert benchmark.multiply_adds(lambda: torch.zeros(9).sigmoid()) == 0


def test_many_prints_a_row_per_count(capsys):
    """--many: per object, batched against single calls, a ratio for each B."""
    benchmark.bench_many("tiny", 256, torch.device("cpu"), reps=1, counts=[1, 3],
                         with_onnx=False)
    out = [line for line in capsys.readouterr().out.splitlines() if line]
    assert out[0].startswith("tiny at 256 px: a prompt adds ") and "estimated 3.5 MiB" in out[0]
    assert "prompts in one pass at most: PyTorch 585" in out[1]
    assert [line.split(":")[0] for line in out[2:]] == ["  B =   1", "  B =   3"]
    assert all(" ms vs " in line and line.endswith("x") for line in out[2:])
    boxes = benchmark.boxes_on(np.zeros((192, 256, 3), np.uint8), 32)
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    assert (boxes >= 0).all() and (boxes[:, [0, 2]] <= 256).all()
    assert (boxes[:, [1, 3]] <= 192).all()


def test_operator_profile_is_per_call_and_names_the_shapes(capsys):
    """torch_operators: an operator's self time per call of fn, not over all the calls, keyed by
    its inputs' shapes; --profile prints a prompt's and an image's slowest operators."""
    a, b = torch.randn(384, 512), torch.randn(512, 448)
    fn = lambda: a @ b  # noqa: E731
    wall = min(benchmark.timed(fn, torch.device("cpu")) for _ in range(9))
    times = benchmark.torch_operators(fn, reps=16, by_shape=True)
    assert 0.25 * wall < times["aten::mm [384, 512] [512, 448]"] < 4 * wall  # summed: 16x wall
    assert "aten::mm" in benchmark.torch_operators(fn, reps=2, by_shape=False)
    benchmark.bench_profile("tiny", 256, reps=1, with_onnx=False)
    out = capsys.readouterr().out
    prompt = out.split("SAMA per prompt: ")[1].splitlines()[1]
    image = out.split("SAMA per image, set_image: ")[1].splitlines()[1]
    assert " ms " in prompt and "%  aten::" in prompt and prompt.endswith("]")  # with shapes
    assert " ms " in image and "%  aten::" in image and "[" not in image  # by name only


@pytest.mark.parametrize("argv, problem", [
    (["--train", "--onnx"], "--train and --onnx: one kind of benchmark per run"),
    (["--steps", "5"], "--steps applies to --train only"),
    (["--onnx", "--compile"], "--compile applies to --train only"),
    (["--optimisations", "--meta"], "--meta times Meta's SAM beside ours"),
    (["--train", "--bf16"], "--bf16 does not apply to --train"),
    (["--params", "--image-size", "512"], "--image-size does not apply to --params"),
    (["--objects", "8"], "--objects applies to --many only"),
    (["--onnx", "--no-onnx"], "--no-onnx applies to --many only"),
    (["--many", "--objects", "0"], "--objects must be at least 1, got 0"),
    (["--many", "--bf16"], "--many compares float32 predictors"),
    (["--profile", "--bf16"], "--profile reads float32 operators on the CPU"),
    (["--profile", "--many"], "--many and --profile: one kind of benchmark per run"),
])
def test_an_option_another_kind_of_run_would_ignore_is_refused(argv, problem, capsys):
    with pytest.raises(SystemExit) as info:
        benchmark.main(argv)
    assert info.value.code == 2 and problem in capsys.readouterr().err
