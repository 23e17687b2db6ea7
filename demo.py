"""The five-minute demo: `python demo.py` (2 CPU cores, nothing downloaded).

1. Writes toy datasets in the official layouts (data.py make-toy): DIS5K, AIM, AIM-500, backgrounds.
2. Makes a tiny SAM checkpoint in the official format by briefly training the tiny SAM on the toy
   segmentation data. It stands in for the official weights (which cannot be downloaded here) and
   goes through exactly the same loading code.
3. Trains SAMA on top of it with train.py's loop (SAM frozen).
4. Evaluates plain SAM and SAMA with evaluate.py on the toy DIS-TE1 and the toy Composition-1K,
   prints the table and the path of a contact sheet.

Toy numbers demonstrate that the pipeline works end to end; they say nothing about the paper's
results.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import data
import evaluate
import losses
import train
from load_sam_weights import atomic_save
from sam import SAM_VARIANTS, Sam


def pretrain_tiny_sam(toy: Path, steps: int, seed: int, out: Path) -> Path:
    """Train the whole tiny SAM (nothing frozen) on the toy segmentation set; save its
    state_dict."""
    torch.manual_seed(seed)
    sam = Sam(SAM_VARIANTS["tiny"]).train()
    dataset = data.SegmentationDataset(
        data.dis_pairs(toy / "DIS5K", "DIS-TR"), sam.config.image_size, seed=seed
    )
    stream = train.BatchStream(dataset, batch_size=8, world=1, rank=0, seed=seed, workers=0)
    optimizer = torch.optim.AdamW(sam.parameters(), lr=2e-3, weight_decay=0.01)
    prompt_rng = torch.Generator().manual_seed(seed)
    for step in range(steps):
        batch = stream.next()
        # box or points
        kind = train.PROMPT_KINDS[int(torch.randint(2, (1,), generator=prompt_rng))]
        logits, _ = sam(batch["image"], **train.prompts(batch, kind))
        logits = F.interpolate(logits, batch["target"].shape[-2:], mode="bilinear")
        loss, _ = losses.seg_loss(logits, batch["target"], batch["valid"])
        optimizer.zero_grad()
        loss.backward()
        for group in optimizer.param_groups:  # cosine decay: a usable model in few steps
            group["lr"] = 2e-3 * 0.5 * (1 + torch.cos(torch.tensor(step / steps * 3.14159)).item())
        optimizer.step()
        if (step + 1) % 50 == 0 or step + 1 == steps:
            print(f"  tiny SAM step {step + 1}/{steps}: loss {loss.item():.3f}")
    path = out / "sam_tiny_toy.pth"
    atomic_save(sam.state_dict(), path)  # the official checkpoint format: a plain state_dict
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="SAMA's five-minute CPU demo on toy data.")
    p.add_argument(
        "--out", default="runs/demo", help="where the toy data, checkpoints and results go"
    )
    p.add_argument("--sam-steps", type=int, default=300, help="steps of tiny-SAM pre-training")
    p.add_argument("--sama-steps", type=int, default=200, help="steps of SAMA training")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    out, t0 = Path(args.out), time.time()

    print(f"[1/4] toy datasets -> {out / 'toy'}")
    toy = out / "toy"
    if not (toy / "DIS5K").exists():
        data.make_toy(toy, seed=args.seed)

    print(f"[2/4] a tiny SAM in the official format, trained {args.sam_steps} steps on toy DIS-TR")
    sam_path = pretrain_tiny_sam(toy, args.sam_steps, args.seed, out)

    print(f"[3/4] SAMA on top of it (SAM frozen), {args.sama_steps} steps")
    run = out / "sama"
    code = train.main(
        [
            "--model",
            "tiny",
            "--sam-checkpoint",
            str(sam_path),
            "--data",
            str(toy / "DIS5K"),
            "--matting",
            str(toy / "AIM"),
            "--aim500",
            str(toy / "AIM-500"),
            "--backgrounds",
            str(toy / "backgrounds"),
            "--out",
            str(run),
            "--max-steps",
            str(args.sama_steps),
            "--batch-size",
            "4",
            "--workers",
            "0",
            "--warmup-steps",
            "20",
            "--log-every",
            "50",
            "--val-every",
            "0",
            "--save-every",
            str(args.sama_steps),
            "--seed",
            str(args.seed),
        ]
    )
    if code != 0:
        return code

    print("[4/4] plain SAM vs SAMA on toy DIS-TE1 (box prompts) and toy Composition-1K (matting)")
    rows = {}
    for split, roots in (
        ("DIS-TE1", ["--data", str(toy / "DIS5K")]),
        ("Composition-1K", ["--matting", str(toy / "AIM")]),
    ):
        for model in ("sam", "sama"):
            dest = out / "eval" / f"{model}-{split}"
            vis = ["--vis", "6"] if (model == "sama" and split == "DIS-TE1") else []
            code = evaluate.main(
                [
                    "--split",
                    split,
                    *roots,
                    "--model",
                    model,
                    "--checkpoint",
                    str(run / "sama.pt"),
                    "--sam-checkpoint",
                    str(sam_path),
                    "--out",
                    str(dest),
                    *vis,
                ]
            )
            if code != 0:
                return code
            rows[(split, model)] = json.loads((dest / "metrics.json").read_text())["scores"]

    seg, mat = rows[("DIS-TE1", "sam")], rows[("DIS-TE1", "sama")]
    print("\ntoy DIS-TE1   maxF    MAE     wF      Sm      meanEm  mIoU    mBIoU")
    for name, r in (("SAM ", seg), ("SAMA", mat)):
        print(
            f"  {name}        "
            + "  ".join(
                f"{r[k]:.4f}" for k in ("maxF", "MAE", "wF", "Sm", "meanEm", "mIoU", "mBIoU")
            )
        )
    print("toy Composition-1K   SAD     MSE(x1e3)  Grad    Conn")
    for name in ("sam", "sama"):
        r = rows[("Composition-1K", name)]
        print(
            f"  {name.upper():4}               "
            + "  ".join(f"{r[k]:.4f}" for k in ("SAD", "MSE", "Grad", "Conn"))
        )
    print(f"\ncontact sheet: {out / 'eval' / 'sama-DIS-TE1' / 'vis.png'}")
    print(
        f"done in {time.time() - t0:.0f} s. Toy numbers show the pipeline works; they are not the "
        "paper's results."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
