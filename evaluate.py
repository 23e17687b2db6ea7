"""Evaluate SAMA (or plain SAM, the baseline row) on the paper's benchmarks, prompted from the GT.

    python evaluate.py --split DIS-VD                       # runs/sama/sama.pt, DIS5K in ./DIS5K
    python evaluate.py --split DIS-TE --model sam           # plain SAM on the same box prompts
    python evaluate.py --split Composition-1K --matting ./AIM
    python evaluate.py --split COIFT --coift ./COIFT        # 1, 3, 5 and 10 positive points
    python evaluate.py --split Distinctions-646 --backgrounds ./VOC2012/JPEGImages
    python evaluate.py --split RefMatte-RW100 --refmatte ./RefMatte_RW_100
    python evaluate.py --folder ./my_test                   # your own DIR/{im, gt} or {im, alpha}
    python evaluate.py --split DIS-VD --no-mvle             # an ablation: runs/sama-no-mvle/sama.pt

The command line around scoring.py: the split registry (SPLITS), the model to evaluate
(load_predictor), the output folder (one run at a time, --resume / --overwrite, settings.json) and
the report (metrics.json, per_image.json, results.md beside the paper's rows from scoring.PAPER,
vis.png from scoring.contact_sheet). How a split is prompted, written and scored is scoring.py's
(its docstring has the protocol).

Distinctions-646's test set is composited once (readers.d646_test_triples: each foreground over the
20 images its Test/bg_test.txt names in --backgrounds, Adobe's rule) into Test/composite. Every
scored trimap must hold only 0 / 128 / 255 with an unknown region.

Outputs in --out: pred/{stem}.png (the probability map or the alpha), mask/{stem}.png (the binary
mask, segmentation splits), pred-{k}pt/ (point splits: the masks), metrics.json, per_image.json
(every image's scores, for the study's bootstrap), results.md (our row beside the paper's), vis.png
with --vis N. A model trained for one task (train.py --tasks, recorded in its checkpoint) is scored
through the head it trained; a --tasks or an ablation switch the checkpoint contradicts is refused.
--resume reuses every readable PNG of the right size, once settings.json shows the same weights
(SHA-256 of the files), split, prompt and maps made them. Before any prediction every file of the
split is decoded and checked (sizes, an object in the GT).

Options that another option would make ignored are refused in one line (conflicting_options): a
dataset folder the split does not read (--folder with another --split, --coift with a DIS5K split,
--backgrounds beside any split but Distinctions-646), and with --model sam --sam-checkpoint (that
SAM file alone) --checkpoint, --tasks, --no-mvle or --no-local-adapter; with --model sam
--checkpoint, --tasks.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch

import outputs
import readers
from frame import NonFiniteOutput
from load_sam_weights import CheckpointError, CheckpointRecord, load_sam
from metrics import column
from outputs import OptionError, WriteError
from predictor import Predictor, keep_freed_cpu_memory
from sam import Sam, compile_image_encoder
from sama import SAMA, TASK_CHOICES
from scoring import (
    BAND,
    MATTING_KEYS,
    PAPER,
    PAPER_NOTES,
    POINT_COUNTS,
    PROMPTS,
    SEG_KEYS,
    contact_rows,
    contact_sheet,
    score_split,
)

# ----------------------------------------------------------------------------------------------
# Splits: readers.SPLITS (where the pairs come from, how they are prompted), the scored ones
# ----------------------------------------------------------------------------------------------


SPLITS = {name: split for name, split in readers.SPLITS.items() if split.scored}


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------


def results_markdown(split_name: str, report: dict) -> str:
    """Our row beside the paper's rows for this split, each with its table named."""
    kind = SPLITS[split_name].kind
    scores = report["scores"]
    if kind == "seg":
        keys = SEG_KEYS + (("HCE",) if "HCE" in scores else ())  # HCE_SPLITS
    elif kind == "points":
        keys = tuple(f"{m}@{k}" for k in POINT_COUNTS for m in ("mIoU", "mBIoU"))
    else:
        keys = MATTING_KEYS + tuple(k + BAND for k in MATTING_KEYS if k + BAND in scores)

    def fmt(v, key="") -> str:
        if v is None:
            return "–"
        return f"{v:.4g}" if kind == "matting" else f"{v:.1f}" if key == "HCE" else f"{v:.3f}"

    ours = report["config"]
    source = report["checkpoint"] or report["sam_checkpoint"]
    lines = [f"# {split_name}: {report['model']} ({source})", "",
             f"Prompt: {report['prompt']}.  ", f"Prediction: {report['prediction']}.  "]
    if kind == "matting":
        lines.append(f"Region: {scores['region']}; SAD, Grad, Conn / 1000, MSE x1e3.  ")
        if "region" + BAND in scores:
            lines.append(f"Columns {BAND}: the {scores['region' + BAND]} of the derived trimap.  ")
    lines += [
        f"Images: {scores['n']}.",
        "",
        "| row | source | " + " | ".join(map(column, keys)) + " |",
        "|---|---|" + "---|" * len(keys),
        "| **ours** | this run | " + " | ".join(fmt(scores[k], k) for k in keys) + " |",
    ]
    for row in PAPER.get(split_name, []):
        match = all(ours.get(k) == v for k, v in row["config"].items())
        label = f"paper: {row['label']}" + (" (same configuration as ours)" if match else "")
        lines.append(
            f"| {label} | {row['table']} | "
            + " | ".join(fmt(row["scores"].get(k), k) for k in keys)
            + " |"
        )
    if split_name in PAPER_NOTES:
        lines += ["", PAPER_NOTES[split_name]]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------


def folder_split(folder) -> str:
    """--folder's split from what it holds: masks (gt/) or mattes (alpha/); both: say which."""
    sets = readers.folder_sets(folder)
    if sets["masks"] and sets["mattes"]:
        raise readers.DataError(f"{folder}: holds masks (gt) and mattes (alpha); choose one with "
                             f"--split folder-masks or --split folder-mattes")
    return "folder-masks" if sets["masks"] else "folder-mattes"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--split", help=", ".join(SPLITS) + " (default with --folder: by its folders)")
    p.add_argument(
        "--model", default="sama", choices=["sama", "sam"], help="sam: the plain-SAM baseline row"
    )
    p.add_argument(
        "--checkpoint",
        help="SAMA checkpoint (default: the training run's sama.pt for the switches below)",
    )
    p.add_argument(
        "--sam-checkpoint",
        help="SAM checkpoint (default: the file recorded in the SAMA checkpoint)",
    )
    p.add_argument("--no-mvle", action="store_true", help="the ablation trained with --no-mvle")
    p.add_argument("--no-mvle-attention", action="store_true",
                   help="the ablation trained with --no-mvle-attention")
    p.add_argument(
        "--no-local-adapter",
        action="store_true",
        help="the ablation trained with --no-local-adapter",
    )
    p.add_argument("--tasks", choices=list(TASK_CHOICES),
                   help="the run trained with --tasks (default: runs/sama, or what --checkpoint "
                        "records); must agree with the checkpoint")
    # each split's folder (default ./DIS5K, ... as DATA_DEFAULTS says); --folder has none
    p.add_argument("--data", help="DIS5K folder (DIS-VD, DIS-TE1..4)")
    p.add_argument("--coift", help="COIFT folder")
    p.add_argument("--thin", help="ThinObject-5K folder (either layout)")
    p.add_argument("--matting", help="folder holding Combined_Dataset (Composition-1K), or it")
    p.add_argument("--aim500", help="AIM-500 folder")
    p.add_argument("--am2k", help="AM-2K folder")
    p.add_argument("--p3m", help="P3M-10k folder")
    p.add_argument("--d646", help="Distinctions-646 folder")
    p.add_argument("--backgrounds", help="Distinctions-646: the folder holding the images its "
                                         "Test/bg_test.txt names (VOC 2012's JPEGImages), to "
                                         "composite its test set over, once")
    p.add_argument("--refmatte", help="RefMatte-RW100 folder")
    p.add_argument("--folder", help="a folder of your own: DIR/{im, gt} (split folder-masks) or "
                                    "DIR/{im, alpha} (folder-mattes), every image scored")
    p.add_argument("--out", help="output folder (default: runs/eval/<run>-<split>)")
    p.add_argument(
        "--vis", type=int, default=0, metavar="N", help="write vis.png for the first N images"
    )
    p.add_argument(
        "--limit", type=int, default=0, metavar="N", help="only the first N images (0: all)"
    )
    p.add_argument("--resume", action="store_true", help="reuse the predictions already in --out")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the evaluation in --out (its pred*/, settings.json, metrics.json, "
                        "results.md, vis.png)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile SAM's image encoder before the first image (time printed)")
    return p.parse_args(argv)


# a split's dataset folder when its option is not given
DATA_DEFAULTS = {"data": "./DIS5K", "coift": "./COIFT", "thin": "./ThinObject5K",
                 "matting": "./AIM", "aim500": "./AIM-500", "am2k": "./AM-2K", "p3m": "./P3M-10k",
                 "d646": "./Distinctions-646", "refmatte": "./RefMatte_RW_100"}


def conflicting_options(args) -> str:
    """An option the other options would make ignored, in one line ('' if none): a dataset folder
    the split does not read (--folder with another --split included), --backgrounds for a split
    that composites nothing, and for plain SAM from its own file (--model sam --sam-checkpoint)
    the SAMA options; with --checkpoint, plain SAM takes no --tasks."""
    split = SPLITS[args.split] if args.split else readers.SPLITS["folder-masks"]
    for name in [*DATA_DEFAULTS, "folder", "backgrounds"]:
        if getattr(args, name) is not None and name != split.root_option and (
                name not in split.options):
            if args.split is None:
                return f"--{name}: not read with --folder, which scores that folder alone"
            reads = f"--{split.root_option}" + "".join(f" and --{o}" for o in split.options)
            return f"--{name}: not read by --split {args.split}, which reads {reads}"
    if args.model == "sam" and args.sam_checkpoint:
        given = [o for o in ("checkpoint", "tasks", "no_mvle", "no_mvle_attention",
                             "no_local_adapter")
                 if getattr(args, o) not in (None, False)]
        if given:
            return (f"--{given[0].replace('_', '-')}: --model sam with --sam-checkpoint scores "
                    f"that SAM file alone; leave it out")
    if args.model == "sam" and args.checkpoint and args.tasks:
        return "--tasks: --model sam scores the SAM inside --checkpoint, which has no heads"
    return ""


def main(argv=None) -> int:
    args = parse_args(argv)
    return outputs.run_main(lambda: evaluate(args), {NonFiniteOutput: 3, readers.DataError: 2,
                                                     CheckpointError: 2, WriteError: 2},
                            outputs.INTERRUPTED)


def evaluate(args) -> int:
    """The options checked before any work, then one run holding its output folder."""
    if args.split is None and args.folder is None:
        raise OptionError("--split is required (or --folder DIR)")
    if args.split is not None and args.split not in SPLITS:
        raise OptionError(f"unknown split {args.split!r}; valid: {', '.join(SPLITS)}")
    for option, value in (("--limit", args.limit), ("--vis", args.vis)):
        if value < 0:
            raise OptionError(f"{option} {value}: must be 0 or more")
    if args.resume and args.overwrite:
        raise OptionError("--resume and --overwrite: give one or the other")
    conflict = conflicting_options(args)
    if conflict:
        raise OptionError(conflict)
    keep_freed_cpu_memory()
    if args.split is None:
        args.split = folder_split(args.folder)  # it names the default output folder
    with outputs.claim(output_folder(args)):  # one run at a time in --out
        check_out(args)  # once held: another run may have written it until now
        try:
            return run(args)
        except NonFiniteOutput as e:
            raise NonFiniteOutput(f"{e}; not written, not scored") from None


OWN = ("settings.json", "metrics.json", "results.md", "vis.png")  # pred*/ besides


def training_run_folder(args) -> Path:
    """train.py's default --out for the switches given: where the checkpoint is looked for."""
    return outputs.default_run_dir(args.no_mvle, args.no_mvle_attention, args.no_local_adapter,
                                   args.tasks or "both")


def output_folder(args) -> Path:
    """--out, or runs/eval/<run>-<split> for the switches given."""
    if args.out:
        return Path(args.out)
    run_dir = training_run_folder(args)
    return Path("runs") / "eval" / f"{'sam' if args.model == 'sam' else run_dir.name}-{args.split}"


def check_out(args) -> None:
    """Before any work: no file stands where a folder goes, and a run without --resume or
    --overwrite starts in an empty folder (outputs.claim checked that --out can be written)."""
    out = output_folder(args)
    kind = SPLITS[args.split].kind
    for name in [f"pred-{k}pt" for k in POINT_COUNTS] if kind == "points" else ["pred"]:
        if (out / name).exists() and not (out / name).is_dir():
            raise WriteError(f"{out / name}: is a file, where the predictions go; use another "
                             f"--out")
    there = outputs.files(out)
    if there and not (args.resume or args.overwrite):
        raise WriteError(f"{out}: holds an earlier evaluation ({', '.join(there[:3])}"
                         f"{', ...' * (len(there) > 3)}); --resume continues it (same weights and "
                         f"data only), --overwrite replaces it, or use another --out")


def clear_own_outputs(out: Path) -> None:
    """--overwrite: this command's outputs in --out go, before anything is written; other files
    stay."""
    for path in out.glob("pred*"):
        if path.is_dir():
            shutil.rmtree(path)
    for name in OWN:
        (out / name).unlink(missing_ok=True)


def load_predictor(args, checkpoint: Path, device: str
                   ) -> tuple[Predictor, dict, CheckpointRecord]:
    """The predictor of the model to evaluate, its configuration (recorded in metrics.json,
    matched to paper rows) and the record of the files it was read from (the SHA-256 of the bytes
    loaded; plain SAM taken from a SAMA file: the SAMA file's record). A SAMA model's
    configuration holds the tasks and the mask threshold its checkpoint records."""
    if args.model == "sam" and args.sam_checkpoint:  # plain SAM needs no SAMA file
        sam = load_sam(args.sam_checkpoint, device=device)
        return Predictor(sam), {"model": "sam", "variant": sam.config.name}, sam.checkpoint_record
    predictor = Predictor.from_checkpoint(checkpoint, args.sam_checkpoint, device=device)
    sama = predictor.model
    record = sama.checkpoint_record
    tasks = list(record.tasks)
    if args.model == "sama" and args.tasks and TASK_CHOICES[args.tasks] != tasks:
        trained = next(name for name, heads in TASK_CHOICES.items() if heads == tasks)
        raise CheckpointError(f"{checkpoint}: trained with --tasks {trained}, not --tasks "
                              f"{args.tasks} (a head is scored only if it trained)")
    if ((args.no_mvle and sama.use_mvle) or (args.no_local_adapter and sama.use_local_adapter)
            or (args.no_mvle_attention and sama.mvle_attention)):
        raise CheckpointError(
            f"{checkpoint}: holds {sama.config}, not the ablation asked for (--no-mvle / "
            "--no-mvle-attention / --no-local-adapter)"
        )
    if args.model == "sam":
        return Predictor(sama.sam), {"model": "sam", "variant": sama.sam.config.name}, record
    return predictor, {"model": "sama", **sama.config, "tasks": tasks,
                       "threshold": record.threshold}, record


def prediction_text(kind: str, config: dict) -> str:
    """What the written PNGs hold, for metrics.json and results.md."""
    if config["model"] == "sam":
        if kind == "matting":
            return "SAM's binary mask as alpha (0 / 255)"
        if kind == "points":
            return "SAM's binary mask (logits > 0, single-mask output), 0 / 255 PNG"
        return ("SAM's probability sigmoid(mask logits) (single-mask output), 0-255 PNG; its "
                "binary mask (logits > 0), 0 / 255 PNG")
    tasks = config["tasks"]
    if kind == "matting":
        if "matting" in tasks:
            return "SAMA alpha (matting head), 0-255 PNG"
        return ("SAMA segmentation probability sigmoid(seg logits) as the alpha (the model trained "
                "no matting head), 0-255 PNG")
    mask = f"binary mask (probability > {config['threshold']:g}), 0 / 255 PNG"
    if kind == "points":
        return f"SAMA {mask}"
    if "seg" in tasks:
        return f"SAMA segmentation probability sigmoid(seg logits), 0-255 PNG; its {mask}"
    return (f"SAMA alpha (matting head) as the segmentation probability map (the model trained no "
            f"segmentation head), 0-255 PNG; its {mask}")


def read_settings(path: Path) -> dict:
    """settings.json of an earlier run, or one line saying it is not one."""
    try:
        settings = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise readers.DataError(f"{path}: unreadable ({type(e).__name__}); use another --out or "
                             f"--overwrite") from None
    if not isinstance(settings, dict):
        raise readers.DataError(f"{path}: not a settings object; use another --out or --overwrite")
    return settings


def split_items(args) -> tuple:
    """The split's entry, its folder, the items to score (--limit) and all its items, checked:
    every file decoded, sizes equal, an object in every GT (the prompt comes from it), a scored
    trimap only 0 / 128 / 255 with an unknown region; one line naming the file, before the model
    loads."""
    split = SPLITS[args.split]
    root = getattr(args, split.root_option) or DATA_DEFAULTS.get(split.root_option)
    if root is None:
        raise readers.DataError(f"--split {args.split} needs --{split.root_option} DIR")
    options = {name: getattr(args, name) for name in split.options}
    all_pairs = split.reader(root, **options)
    pairs = all_pairs[: args.limit] if args.limit else all_pairs
    split.check(pairs)
    return split, root, pairs, all_pairs


def claim_out(args, out: Path, settings: dict) -> None:
    """--out made ready for these settings: --resume refuses to mix two models' or two datasets'
    files, --overwrite clears this command's own outputs, a killed write's leftovers go, and
    settings.json says what makes the predictions."""
    settings_path = out / "settings.json"
    if args.resume and settings_path.is_file():
        before = read_settings(settings_path)
        where = ("checkpoint", "sam_checkpoint")  # paths: the same weights may have moved
        changed = [k for k in settings if k not in where and before.get(k) != settings[k]]
        if changed:
            raise readers.DataError(f"{out}: holds predictions made with another "
                                    f"{', '.join(changed)}; use another --out or --overwrite")
    elif args.resume and outputs.files(out):
        raise readers.DataError(f"{out}: holds files but no settings.json saying which weights "
                                f"and data made them; use another --out or --overwrite")
    if args.overwrite:
        clear_own_outputs(out)
    for folder in (out, *out.glob("pred*")):  # what writes killed mid-way left
        outputs.remove_stale_temporaries(folder)
    out.mkdir(parents=True, exist_ok=True)
    outputs.write_text(json.dumps(settings, indent=2) + "\n", settings_path)


def write_report(args, root, pairs, settings: dict, scores: dict, per_image: dict,
                 out: Path) -> None:
    """per_image.json, metrics.json and results.md, and the scores in one line."""
    report = {
        **settings,
        "data": str(Path(root).resolve()),
        "scored": "every PNG in pred*/ (and mask/) read back and scored with metrics.py at the "
                  "GT's resolution",
        "scores": scores,
        "paper": PAPER.get(args.split, []),
    }
    # per_image.json first: a metrics.json always has its images' scores beside it
    stems = [Path(p[1]).stem for p in pairs]
    outputs.write_text(json.dumps({"split": args.split, "stems": stems, "scores": per_image})
                       + "\n", out / "per_image.json")
    outputs.write_text(json.dumps(report, indent=2) + "\n", out / "metrics.json")
    outputs.write_text(results_markdown(args.split, report), out / "results.md")
    shown = ", ".join(f"{column(k)} {v:.4g}" for k, v in scores.items() if isinstance(v, float))
    print(f"{args.split} ({scores['n']} images), {args.model}: {shown}  -> {out / 'metrics.json'}")


def run(args) -> int:
    if args.split is None:
        args.split = folder_split(args.folder)
    split, root, pairs, all_pairs = split_items(args)  # data problems show before the model loads
    run_dir = training_run_folder(args)
    checkpoint = Path(args.checkpoint) if args.checkpoint else run_dir / "sama.pt"
    out = output_folder(args)
    if (
        not args.checkpoint
        and not checkpoint.exists()
        and not (args.model == "sam" and args.sam_checkpoint)
    ):
        raise CheckpointError(
            f"{checkpoint}: no such file (the default training run's weights for these switches); "
            f"train first or pass --checkpoint"
        )
    device = "cuda" if torch.cuda.is_available() else "cpu"
    predictor, config, record = load_predictor(args, checkpoint, device)
    model = predictor.model

    # what made the predictions in `out`: --resume refuses to mix two models' or two datasets'
    # files. The weights are known by the SHA-256 of the bytes loaded (a file retrained at the same
    # path is another model), the data by the names and bytes of every file of the split
    sam_only = args.model == "sam" and args.sam_checkpoint
    sam_record = record if sam_only else record.sam
    settings = {
        "split": args.split,
        "model": args.model,
        "checkpoint": None if sam_only else str(checkpoint.resolve()),
        "checkpoint_sha256": None if sam_only else record.sha256,
        "sam_checkpoint": (str(Path(args.sam_checkpoint).resolve()) if sam_only
                           else sam_record.file),
        "sam_sha256": sam_record.sha256,
        "config": config,
        "prompt": PROMPTS[split.kind].format(above=split.box_above),
        "prediction": prediction_text(split.kind, config),  # what the PNGs hold
        "data": outputs.files_digest(f for files in all_pairs for f in files),
    }
    claim_out(args, out, settings)

    if args.compile:
        sam = model if isinstance(model, Sam) else model.sam
        views = 5 if isinstance(model, SAMA) and model.use_mvle else 1
        seconds = compile_image_encoder(sam.eval(), views)
        print(f"--compile: SAM's image encoder compiled in {seconds:.1f} s")
    scores, per_image = score_split(args.split, split, pairs, out, predictor, args.resume,
                                    progress=not args.no_progress)
    if args.vis:
        contact_sheet(contact_rows(predictor, split.kind, pairs[: args.vis], split.box_above),
                      out / "vis.png")
    write_report(args, root, pairs, settings, scores, per_image, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
