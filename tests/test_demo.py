"""The demo (`python demo.py`) in a shortened form: every stage runs and leaves its files."""

import json

import torch

import demo
from load_sam_weights import load_sam, load_sama


def test_demo_runs_end_to_end_in_short(tmp_path, capsys):
    out = tmp_path / "demo"
    assert demo.main(["--out", str(out), "--sam-steps", "3", "--sama-steps", "2"]) == 0
    printed = capsys.readouterr().out
    assert (
        "toy DIS-TE1" in printed
        and "toy Composition-1K" in printed
        and "not the paper's results" in printed
    )

    # the official format: a plain state dict of every SAM key
    sam = load_sam(out / "sam_tiny_toy.pth")
    assert sam.config.name == "tiny"
    sama = load_sama(out / "sama" / "sama.pt")  # finds its SAM file from the recorded path
    assert all(
        torch.equal(a, b) for a, b in zip(sama.sam.state_dict().values(), sam.state_dict().values())
    )

    for run in ("sam-DIS-TE1", "sama-DIS-TE1", "sam-Composition-1K", "sama-Composition-1K"):
        scores = json.loads((out / "eval" / run / "metrics.json").read_text())["scores"]
        keys = (
            {"SAD", "MSE", "Grad", "Conn"}
            if "Composition" in run
            else {"maxF", "wF", "MAE", "Sm", "meanEm", "mIoU", "mBIoU"}
        )
        assert keys <= set(scores)
        assert all(scores[k] == scores[k] for k in keys)  # no NaN
    assert (out / "eval" / "sama-DIS-TE1" / "vis.png").stat().st_size > 0
