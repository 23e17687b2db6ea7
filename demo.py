"""The five-minute demo: `python demo.py` (2 CPU cores, nothing downloaded).

1. Writes the synthetic fine-structure benchmark (synthetic.py) to OUT/bench, once.
2. Trains a SAMA live on the shipped stand-in SAM (weights/sam_standin.pth, frozen): --steps steps
   of train.py with the study's recipe (recipe.RECIPE), which runs 1200.
3. Scores three models with evaluate.py on the thin-structure test split (DIS5K/DIS-TE1, GT-box
   prompts; every model's probability map and binary mask, each score naming its map) and on the
   matting test (Composition-1K style, box of alpha > 0): plain SAM, the shipped SAMA
   (weights/sama_standin.pt: the study's full model with seed 0 trained 5x as long,
   recipe.SHIPPED_RECIPE) and the one trained here; prints the table.
4. Writes OUT/contact_sheet.png with the shipped SAMA: one thin structure of eight kinds (lines,
   mesh, rings, branch, creature, frame, plant, text) and three mattes (person, glass, lace), the
   first test image of each kind.

The benchmark and the stand-in are a miniature of the paper's setting (DESIGN.md, "The miniature"):
its numbers show the mechanism, not the paper's results.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import outputs
import readers
import scoring
from load_sam_weights import STANDIN_SAMA, CheckpointError
from metrics import column
from miniature import recipe, synthetic
from miniature.recipe import (
    RECIPE,
    SHIPPED_RECIPE,
    STANDIN_SAM,
    evaluate_command,
    run_command,
    train_command,
)
from outputs import provenance
from predictor import Predictor

SHIPPED_SAMA = STANDIN_SAMA
# the contact sheet: the first test image of 8 of the 10 thin kinds (not holes and fence, the
# nearest to solid shapes and to the mesh) and of three matte kinds, by kind (kind = index mod the
# number of kinds, so the first image of kind k is image k)
SHEET_THIN = tuple(list(synthetic.THIN_KINDS).index(kind) for kind in
                   ("lines", "mesh", "rings", "branch", "creature", "frame", "plant", "text"))
SHEET_MATTES = tuple(synthetic.MATTE_KINDS.index(kind) for kind in ("person", "glass", "lace"))
THIN_KEYS = ("maxF", "MAE", "MAE_binary", "mIoU", "mBIoU")  # the table's thin-structure scores


def scores(model: list, split: str, option: str, root: Path, dest: Path, limit: int) -> dict:
    """evaluate.py on one split (a rerun reuses the predictions the same weights wrote); its
    scores."""
    run_command(evaluate_command(split, option, root, model, dest, limit) + ["--resume"])
    return json.loads((dest / "metrics.json").read_text())["scores"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="where everything goes")
    p.add_argument("--steps", type=int, default=300, help="training steps of the live SAMA")
    p.add_argument("--seed", type=int, default=0, help="the live SAMA's seed")
    p.add_argument("--limit", type=int, default=0, help="test images per split (0: all)")
    args = p.parse_args(argv)
    return outputs.run_main(lambda: demo(args), {outputs.WriteError: 2, CheckpointError: 2,
                                                 recipe.CommandError: 2},
                            "interrupted; the same command continues")


def demo(args) -> int:
    if args.steps < 1 or args.limit < 0:
        raise outputs.OptionError("--steps must be 1 or more and --limit 0 or more")
    for path in (STANDIN_SAM, SHIPPED_SAMA):
        if not path.is_file():
            raise outputs.OptionError(f"{path}: missing from the checkout")
    with outputs.claim(args.out):  # one demo at a time in --out
        return run(args)


def run(args) -> int:
    out, t0 = args.out, time.time()
    bench = out / "bench"
    print(f"demo.py at {provenance()}; {os.cpu_count()} CPU cores")

    print(f"[1/4] the synthetic benchmark -> {bench}")
    if not (bench / "manifest.json").is_file():
        synthetic.write_benchmark(bench, seed=0)

    print(f"[2/4] SAMA trained live on the stand-in SAM (frozen), {args.steps} steps")
    # a folder per seed and length: another --steps trains its own run, never resumes another
    live_tag = f"live-seed{args.seed}-{args.steps}steps"
    live = out / f"sama-{live_tag}"
    resume = ("--resume",) if (live / "last.pt").exists() else ()  # a finished run: not again
    run_command(train_command(bench, live, args.seed, {**RECIPE, "steps": args.steps},
                              val_every=0, options=resume))

    print("[3/4] plain SAM, the shipped SAMA and the live SAMA on the two test splits")
    models = (("SAM", "SAM (stand-in)", ["--model", "sam"]),
              ("shipped", f"SAMA shipped ({SHIPPED_RECIPE['steps']} steps)",
               ["--checkpoint", str(SHIPPED_SAMA)]),
              (live_tag, f"SAMA live ({args.steps} steps)",
               ["--checkpoint", str(live / "sama.pt")]))
    table = {}
    for tag, name, model in models:
        thin = scores(model, "DIS-TE1", "--data", bench / "DIS5K",
                      out / "eval" / f"{tag}-DIS-TE1", args.limit)
        matting = scores(model, "Composition-1K", "--matting", bench / "AIM",
                         out / "eval" / f"{tag}-Composition-1K", args.limit)
        table[name] = {**{k: thin[k] for k in THIN_KEYS},
                       **{k: matting[k] for k in ("SAD", "MSE")}}
    # every model through the same maps: its probability map (soft), its binary mask (binary)
    print(f"\n{'':28}{'thin structures (DIS-TE1)':^{16 * len(THIN_KEYS)}}   {'matting test':^16}")
    arrows = {"maxF": "↑", "mIoU": "↑", "mBIoU": "↑"}
    print(f"{'':28}" + "".join(f"{column(k) + arrows.get(k, '↓'):>16}" for k in THIN_KEYS)
          + f"   {'SAD↓':>8}{'MSE↓':>8}")
    for name, row in table.items():
        thin = "".join(f"{row[k]:16.4f}" for k in THIN_KEYS)
        print(f"{name:28}{thin}   {row['SAD']:8.3f}{row['MSE']:8.2f}")

    print("[4/4] the contact sheet (the shipped SAMA)")
    predictor = Predictor.from_checkpoint(SHIPPED_SAMA, STANDIN_SAM)
    thin = readers.dis_pairs(bench / "DIS5K", "DIS-TE1")
    mattes = {Path(image).name: (image, alpha)
              for image, alpha, *_ in readers.composition1k_pairs(bench / "AIM")}
    rows = scoring.contact_rows(predictor, "seg", [thin[i] for i in SHEET_THIN])
    rows += scoring.contact_rows(predictor, "matting",
                                 [mattes[f"test_{j:04d}_0.png"] for j in SHEET_MATTES])
    scoring.contact_sheet(rows, out / "contact_sheet.png")
    print(f"contact sheet: {out / 'contact_sheet.png'}")
    print(f"done in {time.time() - t0:.0f} s. A miniature: the mechanism, not the paper's results.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
