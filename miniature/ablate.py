"""Tables 3, 4 and 5 in miniature: the paper's ablations on the stand-in SAM, with error bars.

    python -m miniature.ablate             # the study: 8 trained configurations x 3 seeds, and
                                           # SAM: 25 runs, about 140 min on 2 cores, two at a
                                           # time (from its runs' times: ablation/README.md)
    python -m miniature.ablate --quick     # every configuration end to end in a few steps (tests/)
    python -m miniature.ablate --per-kind  # after the study: its scores per kind of structure and
                                           # of matte

Every configuration below is trained by train.py on the shipped stand-in SAM
(weights/sam_standin.pth, frozen) once per seed, on the synthetic benchmark (synthetic.py, written
to OUT/bench on the first run), and its checkpoint is scored once by evaluate.py on the two test
splits: the thin-structure split DIS5K/DIS-TE1 (GT-box prompts; maxF, F^w, MAE, S-measure,
E-measure, mIoU, mBIoU) and the Composition-1K-style matting test (box of alpha > 0; SAD and MSE
in the trimap's unknown region);
and by the same rules on the held-out kinds' splits (heldout/DIS5K/DIS-TE1, heldout/AIM: kinds no
training, validation or other test split draws), reported apart as the paper reports its zero-shot
sets.
Plain SAM is scored once: it has no training and no seed. A model trained for one task is scored
through the head it trained (evaluate.py), as Table 5's cross-task cells are here.

The recipe (RECIPE) was chosen on the validation split DIS-VD, which train.py scores at the end of
every run (DESIGN.md, "The ablation in miniature"); the test splits are read once per run.

Table 3's "without MVLE" is run under both readings (DESIGN.md, "The ablations' inputs"):
--no-mvle (the study's: the local views go with MVLE; rows neither, LA-only) and
--no-mvle-attention (the local views kept, MVLE's cross-attention removed; rows neither-views,
LA-only-views); MVLE-only and SAMA are the same under both.

OUT holds bench/, runs/<configuration>-seed<k>/ (train.py's folder, its log and sama.pt),
eval/<configuration>-seed<k>-<split>/ (evaluate.py's; eval/...-heldout-<split>/ on the held-out
kinds), results.json (every score of every seed, the contrasts, the validation's threshold
picks), ablation.md (mean +/- standard deviation over seeds beside the paper's numbers, the same
on the held-out kinds, then each of the paper's contrasts with its 95% interval from a paired
bootstrap over the test's independent units and the seeds, stats.py, and its verdict: supported,
not supported or reversed against the paper's direction on that score; the claims' verdicts;
Table 3's order under each reading; the threshold picks, runs at the grid's edge named) and
ablation.png. After the runs, F^w, S-measure and E-measure are read from each run's saved
evaluation (metrics.json, per_image.json): rescored, nothing retrained. `--per-kind` adds
per_kind.md, the same predictions scored per kind of thin structure and of matte. SAM and SAMA are
scored like for like (evaluate.py): the soft scores from each model's probability map, the binary
ones from each model's mask.
A run whose result.json holds the same settings is not redone, so an interrupted study continues
where it stopped; a result made with other settings stops the study (use another --out).
--per-kind scores the study already in --out: --seeds, --jobs or --quick beside it is refused.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

import outputs
import readers
import scoring
from losses import bce_loss, iou_loss, l1_loss
from metrics import column, mask_iou, matting_scores, seg_scores
from miniature import stats, synthetic
from miniature.recipe import (
    RECIPE,
    RUNNING,
    STANDIN_FRAME,
    STANDIN_SAM,
    CommandError,
    evaluate_command,
    run_command,
    train_command,
)
from outputs import OptionError, provenance
from sam import SAM_VARIANTS, Sam, postprocess_masks, preprocess_shape
from sama import SAMA

QUICK_RECIPE = {"steps": 2, "lr": 3e-3, "warmup_steps": 1, "batch_size": 2}
QUICK_IMAGES = 4  # --quick: images per test split and validation images
# how the test splits are scored; a study scored another way is not reused (its result.json files
# hold another value): 2 = like for like, soft scores from both models' probability maps; 3 = and
# SAMA's mask at the threshold its validation picked (train.py); 4 = and the held-out kinds' splits
SCORING = 4


@dataclass(frozen=True)
class Configuration:
    name: str  # folder names and the figure's labels
    label: str  # the table's row
    table: str  # the paper's table this row reproduces
    options: tuple  # train.py's switches; None: plain SAM, not trained
    paper: dict  # the paper's configuration, as scoring.PAPER records it


FULL = scoring.FULL
CONFIGURATIONS = (
    Configuration("SAM", "SAM (the stand-in, frozen)", "Table 1", None, {"model": "sam"}),
    Configuration("neither", "SAMA without MVLE and Local-Adapter", "Tables 3-4",
                  ("--no-mvle", "--no-local-adapter"),
                  {**FULL, "use_mvle": False, "use_local_adapter": False}),
    Configuration("LA-only", "SAMA with the Local-Adapter only (no MVLE)", "Tables 3-4",
                  ("--no-mvle",), {**FULL, "use_mvle": False}),
    Configuration("MVLE-only", "SAMA with MVLE only (no Local-Adapter)", "Tables 3-4",
                  ("--no-local-adapter",), {**FULL, "use_local_adapter": False}),
    # the other reading of "without MVLE": the local views' features kept, MVLE's cross-attention
    # removed (DESIGN.md, "The ablations' inputs"); the paper's rows are the same
    Configuration("neither-views", "SAMA without MVLE's attention and Local-Adapter (views kept)",
                  "Tables 3-4", ("--no-mvle-attention", "--no-local-adapter"),
                  {**FULL, "use_mvle": False, "use_local_adapter": False}),
    Configuration("LA-only-views", "SAMA with the Local-Adapter only (views kept, no MVLE "
                  "attention)", "Tables 3-4", ("--no-mvle-attention",),
                  {**FULL, "use_mvle": False}),
    Configuration("SAMA", "SAMA (MVLE + Local-Adapter, joint training)", "Tables 1-5", (), FULL),
    Configuration("seg-only", "SAMA trained on segmentation only", "Table 5", ("--tasks", "seg"),
                  {**FULL, "tasks": ["seg"]}),
    Configuration("matting-only", "SAMA trained on matting only", "Table 5",
                  ("--tasks", "matting"), {**FULL, "tasks": ["matting"]}),
)

# the test splits: evaluate.py's split name, its data option, the benchmark folder, the scores kept;
# the held-out ones hold kinds no training, validation or other test split draws (synthetic.py)
THIN_KEYS = ("maxF", "MAE", "MAE_binary", "FP", "FN", "mIoU", "mBIoU")
TESTS = {
    "thin": ("DIS-TE1", "--data", "DIS5K", THIN_KEYS),
    "matting": ("Composition-1K", "--matting", "AIM", ("SAD", "MSE")),
    "thin-heldout": ("DIS-TE1", "--data", "heldout/DIS5K", THIN_KEYS),
    "matting-heldout": ("Composition-1K", "--matting", "heldout/AIM", ("SAD", "MSE")),
}
SEEN, HELDOUT = ("thin", "matting"), ("thin-heldout", "matting-heldout")
# the synthetic stream each test split's images were drawn from: their kinds (per_kind)
KIND_STREAMS = {"thin": "DIS-TE1", "matting": "matting/test-fg",
                "thin-heldout": "heldout/DIS-TE1", "matting-heldout": "heldout/test-fg"}
LOWER_IS_BETTER = {"MAE", "MAE_binary", "FP", "FN", "SAD", "MSE"}

# the paper's contrasts (A, B) and the claim each one tests. The paper's direction is read per
# score from its own numbers (paper_direction): A is the paper's better on every score it prints
# in every contrast but the Local-Adapter alone against MVLE alone, which Table 3 has above on
# maxF, F^w, S-measure and E-measure and below on MAE
CONTRASTS = (("SAMA", "SAM", "Table 1"), ("SAMA", "MVLE-only", "Table 3"),
             ("SAMA", "LA-only", "Table 3"), ("MVLE-only", "neither", "Table 3"),
             ("LA-only", "neither", "Table 3"), ("LA-only", "MVLE-only", "Table 3"),
             ("SAMA", "seg-only", "Table 5"), ("SAMA", "matting-only", "Table 5"),
             # Table 3 under the other reading of "without MVLE" (the local views kept)
             ("SAMA", "LA-only-views", "Table 3"), ("MVLE-only", "neither-views", "Table 3"),
             ("LA-only-views", "neither-views", "Table 3"),
             ("LA-only-views", "MVLE-only", "Table 3"))
CLAIMS = {
    ("SAMA", "SAM"): "Table 1: SAMA above SAM",
    ("SAMA", "MVLE-only"): "Tables 3-4: both modules above MVLE alone",
    ("SAMA", "LA-only"): "Tables 3-4: both modules above the Local-Adapter alone",
    ("MVLE-only", "neither"): "Tables 3-4: MVLE improves the baseline",
    ("LA-only", "neither"): "Tables 3-4: the Local-Adapter improves the baseline",
    ("LA-only", "MVLE-only"): "Tables 3-4: the Local-Adapter alone above MVLE alone (Table 3: "
                              "below it on MAE)",
    ("SAMA", "seg-only"): "Table 5: joint training above segmentation only",
    ("SAMA", "matting-only"): "Table 5: joint training above matting only",
    ("SAMA", "LA-only-views"): "Tables 3-4, views kept: both modules above the Local-Adapter "
                               "alone",
    ("MVLE-only", "neither-views"): "Tables 3-4, views kept: MVLE improves the baseline",
    ("LA-only-views", "neither-views"): "Tables 3-4, views kept: the Local-Adapter improves the "
                                        "baseline",
    ("LA-only-views", "MVLE-only"): "Tables 3-4, views kept: the Local-Adapter alone above MVLE "
                                    "alone (Table 3: below it on MAE)",
}
# the thin split's scores read from evaluate.py's metrics.json and per_image.json after the runs
# (result.json's scores predate them): F^w, S-measure, E-measure, as Tables 1, 3 and 5 print
EXTRA_THIN_KEYS = ("wF", "Sm", "meanEm")
CONTRAST_KEYS = (("thin", "maxF"), ("thin", "wF"), ("thin", "MAE"), ("thin", "Sm"),
                 ("thin", "meanEm"), ("thin", "MAE_binary"), ("thin", "mIoU"), ("thin", "mBIoU"),
                 ("matting", "SAD"))
HELDOUT_CONTRAST_KEYS = tuple((f"{test}-heldout", key) for test, key in CONTRAST_KEYS)
# where the paper prints each score (its split and column): DIS-VD (Tables 1, 3, 5); SAD on AM-2K
# (Table 4) or else RefMatte-RW100 (Table 5). mIoU and mBIoU, which it does not print, follow its
# maxF (its headline score)
PAPER_SCORES = {"maxF": [("DIS-VD", "maxF")], "wF": [("DIS-VD", "wF")],
                "MAE": [("DIS-VD", "MAE")], "MAE_binary": [("DIS-VD", "MAE")],
                "Sm": [("DIS-VD", "Sm")], "meanEm": [("DIS-VD", "meanEm")],
                "mIoU": [("DIS-VD", "maxF")], "mBIoU": [("DIS-VD", "maxF")],
                "SAD": [("AM-2K", "SAD"), ("RefMatte-RW100", "SAD")]}
# the two readings of "without MVLE" (DESIGN.md, "The ablations' inputs"): Table 3's four rows under
# each, in the paper's order of the rows (neither, without MVLE, without Local-Adapter, both)
READINGS = {"--no-mvle (the study's; the local views removed with MVLE)":
            ("neither", "LA-only", "MVLE-only", "SAMA"),
            "--no-mvle-attention (the local views kept)":
            ("neither-views", "LA-only-views", "MVLE-only", "SAMA")}


def paper_direction(a: str, b: str, key: str) -> tuple[bool, str]:
    """Whether the paper's A - B on this score is above zero, and where that is read: the first
    split of PAPER_SCORES[key] whose rows hold both configurations; where none does, A better
    (the contrast is stated with the paper's better configuration first)."""
    config = {c.name: c.paper for c in CONFIGURATIONS}
    for split, column_ in PAPER_SCORES[key]:
        rows = scoring.PAPER.get(split, [])
        first = next((r for r in rows if r["config"] == config[a]), None)
        second = next((r for r in rows if r["config"] == config[b]), None)
        if first and second and column_ in first["scores"] and column_ in second["scores"]:
            higher = first["scores"][column_] > second["scores"][column_]
            return higher, f"{split} {column_} ({first['table']})"
    return key not in LOWER_IS_BETTER, "A better (the paper prints no such score for both)"


def clusters(test: str, stems: list):
    """The bootstrap's independent units (stats.paired_bootstrap's clusters): on a matting split a
    foreground with all its composites (Composition-1K's {foreground}_{k} stems: test_0007_2 ->
    test_0007), on a thin split each image (None)."""
    if not test.startswith("matting"):
        return None
    return [stem.rsplit("_", 1)[0] for stem in stems]


def threshold_picks(results: list, grid=scoring.THRESHOLDS) -> tuple[dict, list]:
    """The mask threshold each trained run's validation picked (train.py, scoring.pick_threshold)
    and the runs whose pick is not strictly inside the grid (its lowest or highest value, or off
    it): there the best threshold may lie beyond the grid."""
    picks = {run_name(r["configuration"], r["seed"]): r["validation"]["val_threshold"]
             for r in results if r.get("validation") and "val_threshold" in r["validation"]}
    edge = [run for run, t in picks.items() if not min(grid) < t < max(grid)]
    return picks, edge


def threshold_line(results: list, grid=scoring.THRESHOLDS) -> str:
    """threshold_picks in one sentence for ablation.md."""
    picks, edge = threshold_picks(results, grid)
    counts = {}
    for t in picks.values():
        counts[t] = counts.get(t, 0) + 1
    shown = ", ".join(f"{t:g} ({n} runs)" for t, n in sorted(counts.items()))
    where = (f"all {len(picks)} inside the grid" if not edge else
             f"WARNING: {len(edge)} of {len(picks)} at the grid's edge or off it, the best "
             f"threshold may lie beyond it: {', '.join(edge)}")
    return (f"Threshold picks (validation's mIoU over {', '.join(f'{t:g}' for t in grid)}): "
            f"{shown or 'none'}; {where}.")


def sama_tensor_shapes() -> str:
    """A digest of the full model's tensor names and shapes on the stand-in: a run made by another
    form of SAMA (other modules or widths) is not reused."""
    with torch.device("meta"):
        model = SAMA(Sam(SAM_VARIANTS["tiny"]))
    shapes = {k: list(v.shape) for k, v in model.state_dict().items() if not k.startswith("sam.")}
    return hashlib.sha256(json.dumps(shapes, sort_keys=True).encode()).hexdigest()[:16]


class StudyError(Exception):
    """A problem that stops the study; the message is one line."""


def run_name(config: str, seed) -> str:
    """A run's folder name: the configuration, and its seed (plain SAM has none)."""
    return config if seed is None else f"{config}-seed{seed}"


def run_folder(out: Path, config: Configuration, seed: int) -> Path:
    """Where one run of the study lives: OUT/runs/<name> (plain SAM's without a seed)."""
    return out / "runs" / run_name(config.name, None if config.options is None else seed)


def eval_folder(out: Path, run: str, test: str) -> Path:
    """Where evaluate.py scored one run on one test split: OUT/eval/<run>-<split> (the held-out
    splits: OUT/eval/<run>-heldout-<split>)."""
    split, _, folder, _ = TESTS[test]
    where = folder.rsplit("/", 1)[0] + "-" if "/" in folder else ""
    return out / "eval" / f"{run}-{where}{split}"


# ----------------------------------------------------------------------------------------------
# One run: train (unless plain SAM), then score on both test splits, once
# ----------------------------------------------------------------------------------------------


def one_run(config: Configuration, seed: int, out: Path, settings: dict, threads: int) -> dict:
    """Train and score one configuration with one seed; OUT/runs/<name>-seed<k>/result.json."""
    run_dir = run_folder(out, config, seed)
    name, result_path = run_dir.name, run_dir / "result.json"
    if result_path.is_file():
        result = json.loads(result_path.read_text())
        if result["settings"] != settings:
            raise StudyError(f"{result_path}: made with {result['settings']}, not {settings}; "
                             f"study into another --out")
        return result
    shutil.rmtree(run_dir, ignore_errors=True)  # an interrupted run starts again
    for test in TESTS:
        shutil.rmtree(eval_folder(out, name, test), ignore_errors=True)
    run_dir.mkdir(parents=True)
    log, bench, t0 = run_dir / "commands.log", out / "bench", time.time()
    quick = settings["quick"]
    model = []
    validation = None
    if config.options is not None:
        recipe = QUICK_RECIPE if quick else RECIPE
        run_command(train_command(bench, run_dir / "train", seed, recipe, recipe["steps"],
                                  QUICK_IMAGES if quick else 0, config.options), log, threads)
        records = (run_dir / "train" / "log.jsonl").read_text().splitlines()
        validation = [json.loads(r) for r in records if "val_maxF" in r][-1]
        model = ["--checkpoint", str(run_dir / "train" / "sama.pt")]
    else:
        model = ["--model", "sam"]
    scores = {}
    for test, (split, option, folder, keys) in TESTS.items():
        dest = eval_folder(out, name, test)
        run_command(evaluate_command(split, option, bench / folder, model, dest,
                                     QUICK_IMAGES if quick else 0), log, threads)
        written = json.loads((dest / "metrics.json").read_text())["scores"]
        scores[test] = {k: written[k] for k in keys}
    result = {"configuration": config.name, "seed": None if config.options is None else seed,
              "settings": settings, "validation": validation, "scores": scores,
              "seconds": round(time.time() - t0, 1)}
    outputs.write_text(json.dumps(result, indent=2) + "\n", result_path)
    return result


# ----------------------------------------------------------------------------------------------
# The table and the figure
# ----------------------------------------------------------------------------------------------


def study_keys(test: str) -> tuple:
    """The scores the study's tables show on a test split: result.json's (TESTS) and, on the thin
    splits, F^w, S-measure and E-measure (EXTRA_THIN_KEYS, rescored())."""
    if test.startswith("matting"):
        return TESTS[test][3]
    return ("maxF", "wF", "MAE", "Sm", "meanEm", "MAE_binary", "FP", "FN", "mIoU", "mBIoU")


def rescored(out: Path, results: list) -> list:
    """The results with F^w, S-measure and E-measure (EXTRA_THIN_KEYS) added to each thin split's
    scores, read from the run's evaluate.py metrics.json: scored from the predictions the runs
    saved, nothing trained or predicted again (result.json, which decides reuse, is unchanged)."""
    found = []
    for r in results:
        scores = {test: dict(values) for test, values in r["scores"].items()}
        for test in scores:
            if test.startswith("matting"):
                continue
            path = eval_folder(out, run_name(r["configuration"], r["seed"]), test) / "metrics.json"
            if not path.is_file():
                raise StudyError(f"{path}: missing; the run's scoring did not finish (delete its "
                                 f"runs/ folder and run the study again)")
            written = json.loads(path.read_text())["scores"]
            scores[test].update({k: written[k] for k in EXTRA_THIN_KEYS})
        found.append({**r, "scores": scores})
    return found


def summary(results: list, tests: tuple = SEEN) -> dict:
    """{configuration: {metric: (mean, standard deviation, [per seed])}} over the seeds run, on the
    test splits `tests` (the seen kinds' or the held-out kinds': the same metrics; study_keys(),
    those every run holds)."""
    out = {}
    for config in CONFIGURATIONS:
        runs = [r for r in results if r["configuration"] == config.name]
        if not runs:
            continue
        out[config.name] = {}
        for test in tests:
            for k in study_keys(test):
                if not all(k in r["scores"][test] for r in runs):
                    continue
                values = [r["scores"][test][k] for r in runs]
                spread = statistics.stdev(values) if len(values) > 1 else 0.0
                out[config.name][k] = (statistics.fmean(values), spread, values)
    return out


def paper_cell(split: str, config: dict, key: str) -> str:
    """The paper's number for this configuration on that split, or a dash where it has none."""
    for row in scoring.PAPER.get(split, []):
        if row["config"] == config and key in row["scores"]:
            return f"{row['scores'][key]:g} ({row['table']})"
    return "-"


MARGIN_KEYS = (("thin", "mBIoU"), ("thin", "maxF"), ("thin", "MAE"), ("thin", "MAE_binary"),
               ("matting", "SAD"))


def margins(results: list) -> list:
    """SAMA's margin over plain SAM per seed, signed so that a positive margin is a gain."""
    sam = next(r for r in results if r["configuration"] == "SAM")["scores"]
    rows = []
    for r in sorted((r for r in results if r["configuration"] == "SAMA"), key=lambda r: r["seed"]):
        row = {"seed": r["seed"]}
        for test, key in MARGIN_KEYS:
            sign = -1 if key in LOWER_IS_BETTER else 1
            row[key] = sign * (r["scores"][test][key] - sam[test][key])
        rows.append(row)
    return rows


def per_image_scores(out: Path, results: list, config: str, test: str, key: str):
    """The study's per-image scores of one configuration on one test split, (seeds, images) ((seeds,
    images, 256) for maxF: the F curves), from evaluate.py's per_image.json; and the images'
    stems."""
    runs = sorted((r for r in results if r["configuration"] == config),
                  key=lambda r: -1 if r["seed"] is None else r["seed"])
    stems, scores = None, []
    for r in runs:
        path = eval_folder(out, run_name(config, r["seed"]), test) / "per_image.json"
        if not path.is_file():
            raise StudyError(f"{path}: missing (written by evaluate.py since like-for-like "
                             f"scoring); run the study again into another --out")
        written = json.loads(path.read_text())
        if stems is not None and written["stems"] != stems:
            raise StudyError(f"{path}: scores other images than the other seeds' runs")
        stems = written["stems"]
        scores.append(written["scores"][key])
    return stems, np.asarray(scores, np.float64)


def contrasts(out: Path, results: list) -> list:
    """Each of the paper's contrasts (CONTRASTS) on each score of CONTRAST_KEYS (and the same on
    the held-out kinds, HELDOUT_CONTRAST_KEYS): A - B, its 95% interval (stats.paired_bootstrap
    over the test's independent units, clusters(), paired, and the seeds) and the verdict against
    the paper's direction on that score (paper_direction): supported, not supported or
    reversed."""
    rows = []
    for a, b, table in CONTRASTS:
        for test, key in CONTRAST_KEYS + HELDOUT_CONTRAST_KEYS:
            stems_a, scores_a = per_image_scores(out, results, a, test, key)
            stems_b, scores_b = per_image_scores(out, results, b, test, key)
            if stems_a != stems_b:
                raise StudyError(f"{a} and {b} were scored on different images of {test}")
            reduce = (lambda curves: curves.max(axis=-1)) if key == "maxF" else None
            found = stats.paired_bootstrap(scores_a, scores_b, reduce,
                                           clusters=clusters(test, stems_a))
            higher, source = paper_direction(a, b, key)
            verdict = stats.verdict(found["low"], found["high"], higher)
            rows.append({"a": a, "b": b, "table": table, "test": test, "key": key, **found,
                         "paper_a_higher": higher, "paper": source, "verdict": verdict})
    return rows


def _means_rows(means: dict, keys: list, paper_cells) -> list:
    """One table row per configuration: the paper's cells (paper_cells(config)), then ours."""
    lines = []
    for config in CONFIGURATIONS:
        ours = []
        for k in keys:
            mean, spread, values = means[config.name][k]
            digits = 2 if k in ("SAD", "MSE") else 4
            ours.append(f"{mean:.{digits}f}" if config.options is None
                        else f"{mean:.{digits}f} ± {spread:.{digits}f}")
        lines.append(f"| {config.label} | " + " | ".join(paper_cells(config) + ours) + " |")
    return lines


def _contrast_rows(found: list, keys: tuple, arrows: dict) -> list:
    """The contrasts table on the scores `keys`: a header and one row per contrast."""
    lines = ["| A - B | paper | " + " | ".join(f"{column(k)}{arrows[k]}" for _, k in keys) + " |",
             "|---" * (2 + len(keys)) + "|"]
    for a, b, table in CONTRASTS:
        cells = []
        for test, key in keys:
            c = next(r for r in found if (r["a"], r["b"], r["test"], r["key"]) == (a, b, test, key))
            digits = 2 if key == "SAD" else 4
            against = c["paper_a_higher"] == (key in LOWER_IS_BETTER)  # the paper has B better
            cells.append(f"{c['diff']:+.{digits}f} [{c['low']:+.{digits}f}, "
                         f"{c['high']:+.{digits}f}] {c['verdict']}"
                         + (" (paper: B better)" if against else ""))
        lines.append(f"| {a} - {b} | {table} | " + " | ".join(cells) + " |")
    return lines


def _verdict_cell(found: list, a: str, b: str, test: str) -> str:
    """One contrast's verdicts on one test split, grouped: "supported: maxF, F^w; reversed: MAE"."""
    groups = {}
    for c in found:
        if (c["a"], c["b"], c["test"]) == (a, b, test):
            groups.setdefault(c["verdict"], []).append(column(c["key"]))
    return "; ".join(f"{v}: {', '.join(groups[v])}" for v in stats.VERDICTS if v in groups)


def claim_rows(found: list) -> list:
    """The claim-by-claim table: each claim (CLAIMS), its contrast and its verdicts on the four
    test splits, written from the intervals (contrasts()), never by hand."""
    tests = SEEN + HELDOUT
    names = {"thin": "thin test", "matting": "matting test", "thin-heldout": "thin held-out",
             "matting-heldout": "matting held-out"}
    lines = ["| the paper's claim | A - B | " + " | ".join(names[t] for t in tests) + " |",
             "|---" * (2 + len(tests)) + "|"]
    for a, b, _ in CONTRASTS:
        cells = [_verdict_cell(found, a, b, test) for test in tests]
        lines.append(f"| {CLAIMS[a, b]} | {a} - {b} | " + " | ".join(cells) + " |")
    return lines


ORDER_KEYS = (("thin", "maxF"), ("thin", "wF"), ("thin", "MAE"), ("thin", "Sm"),
              ("thin", "meanEm"), ("matting", "SAD"))
# Table 3's rows as the paper names them, in READINGS' order
PAPER_ROWS = (scoring.NEITHER, scoring.NO_MVLE, scoring.NO_LA, "SAMA")


def table3_orders(results: list) -> list:
    """Table 3's four rows ranked by their mean over seeds, best first, under each reading of
    "without MVLE" (READINGS), on each score of ORDER_KEYS on the test splits and the held-out
    kinds, beside the paper's ranking of the same rows (DIS-VD; SAD: AM-2K, Table 4)."""
    lines = ["| reading | split | score | the study, best first | the paper, best first |",
             "|---|---|---|---|---|"]
    means = {tests: summary(results, tests) for tests in (SEEN, HELDOUT)}
    for reading, rows in READINGS.items():
        for heldout in (False, True):
            for _, key in ORDER_KEYS:
                cell = means[HELDOUT if heldout else SEEN]
                if not all(r in cell and key in cell[r] for r in rows):
                    continue
                sign = 1 if key in LOWER_IS_BETTER else -1
                ours = sorted(rows, key=lambda r, c=cell, s=sign, k=key: s * c[r][k][0])
                split, paper_key = ("AM-2K", "SAD") if key == "SAD" else ("DIS-VD", key)
                paper = {r["label"]: r["scores"][paper_key] for r in scoring.PAPER[split]
                         if r["label"] in PAPER_ROWS}  # SAMA: Table 1's row on DIS-VD
                ranked = sorted(range(4), key=lambda i, p=paper, s=sign: s * p[PAPER_ROWS[i]])
                where = ("held-out " if heldout else "") + ("matting" if key == "SAD" else "thin")
                lines.append(f"| {reading} | {where} | {column(key)} | {' > '.join(ours)} | "
                             f"{' > '.join(rows[i] for i in ranked)} |")
    return lines


CONTRAST_NOTE = (
    "The paper's contrasts, A - B: the difference of the means over seeds and its 95% interval "
    "from a paired bootstrap ({resamples} resamples, stats.py) over the test's independent units "
    "and the seeds. The units: on the matting splits one foreground with all its composites "
    "(they share its alpha), on the thin splits one image. The verdict reads the interval "
    "against the paper's direction on that score (its own numbers; mIoU and mBIoU, which it "
    "does not print, follow its maxF): \"supported\" where it excludes zero on the paper's "
    "side, \"reversed\" where it excludes zero on the other, \"not supported\" where it holds "
    "zero; \"(paper: B better)\" marks a score on which the paper has B ahead. Three seeds give "
    "the seeds' resampling at most ten distinct draws, so the seeds' share of each interval is "
    "coarse.")


def markdown(results: list, header: str, found: list) -> str:
    """The study's table, the same on the held-out kinds, SAMA's margins over SAM per seed, the
    contrasts (`found`, contrasts()) on the test splits and on the held-out kinds, the claims'
    verdicts, Table 3's order under each reading, and the validation scores and threshold picks."""
    keys = [k for test in SEEN for k in study_keys(test)]
    heldout_keys = [k for test in HELDOUT for k in study_keys(test)]
    arrows = {k: "↓" if k in LOWER_IS_BETTER else "↑" for k in keys}
    lines = [
        "# Tables 3, 4 and 5 in miniature", "", header, "",
        "Ours: mean ± standard deviation over the seeds, on the test splits of the synthetic "
        "benchmark: thin structures (DIS5K/DIS-TE1, GT-box prompts) and the Composition-1K-style "
        "matting test (box of alpha > 0, SAD and MSE x1e3 in the trimap's unknown region). "
        "Like for like: \"(soft)\" scores read each model's probability map (SAM's: sigmoid "
        "of its mask logits), \"(binary)\" scores its binary mask; FP and FN are the fractions "
        "of the image the mask adds to and misses of the GT. F^w, S-measure and E-measure are "
        "rescored from each run's saved evaluation (metrics.json, per_image.json). "
        "Paper: its DIS-VD maxF, F^w, MAE, S-measure and mean E-measure (Tables 1, 3, 5), its "
        "AM-2K SAD (Tables 3-4) and its RefMatte-RW100 SAD (Table 5), real data and real SAM: for "
        "the direction, not the values.",
        "",
    ]
    paper_keys = ("maxF", "wF", "MAE", "Sm", "meanEm")
    paper_head = [f"paper {column(k).removesuffix(' (soft)')}{arrows[k]} DIS-VD"
                  for k in paper_keys] + ["paper SAD↓ AM-2K", "paper SAD↓ RefMatte"]
    lines += ["| configuration | " + " | ".join(paper_head) + " | "
              + " | ".join(f"{column(k)}{arrows[k]}" for k in keys) + " |",
              "|---" * (1 + len(paper_head) + len(keys)) + "|"]
    lines += _means_rows(summary(results), keys, lambda config: [
        paper_cell("DIS-VD", config.paper, k) for k in paper_keys] + [
        paper_cell("AM-2K", config.paper, "SAD"), paper_cell("RefMatte-RW100", config.paper,
                                                             "SAD")])
    lines += ["", "Held-out kinds, scored apart as the paper scores its zero-shot sets: kinds that "
                  "no training, validation or other test split draws (synthetic.py: "
                  f"{', '.join(synthetic.HELDOUT_THIN_KINDS)} in heldout/DIS5K/DIS-TE1, "
                  f"{', '.join(synthetic.HELDOUT_MATTE_KINDS)} in heldout/AIM's "
                  "Composition-1K-style test), by the same rules:", "",
              "| configuration | " + " | ".join(f"{column(k)}{arrows[k]}"
                                               for k in heldout_keys) + " |",
              "|---" * (1 + len(heldout_keys)) + "|"]
    lines += _means_rows(summary(results, HELDOUT), heldout_keys, lambda config: [])
    lines += ["", "SAMA's margin over plain SAM per seed (positive: SAMA better; for MAE and SAD, "
                  "SAM's minus SAMA's):", "",
              "| seed | " + " | ".join(column(k) for _, k in MARGIN_KEYS) + " |",
              "|---" * (1 + len(MARGIN_KEYS)) + "|"]
    for row in margins(results):
        lines.append(f"| {row['seed']} | " + " | ".join(
            f"{row[k]:+.3f}" if k == "SAD" else f"{row[k]:+.4f}" for _, k in MARGIN_KEYS) + " |")
    lines += ["", CONTRAST_NOTE.format(resamples=stats.RESAMPLES), ""]
    lines += _contrast_rows(found, CONTRAST_KEYS, arrows)
    lines += ["", "The same contrasts on the held-out kinds:", ""]
    lines += _contrast_rows(found, HELDOUT_CONTRAST_KEYS, arrows)
    lines += ["", "## Claim by claim", "",
              "Each claim's verdicts, grouped, from the intervals above (written by ablate.py; "
              "the same units, seeds and caveat):", ""]
    lines += claim_rows(found)
    lines += ["", "## Table 3's order under each reading of \"without MVLE\"", "",
              "The four rows ranked by their mean over seeds (which gaps are beyond noise: the "
              "contrasts above):", ""]
    lines += table3_orders(results)
    lines += ["", "Validation (DIS-VD, at the end of each run, through the head it trained): "
                  "maxF per seed", ""]
    for config in CONFIGURATIONS[1:]:
        runs = sorted((r for r in results if r["configuration"] == config.name),
                      key=lambda r: r["seed"])
        values = ", ".join(f"{r['validation']['val_maxF']:.4f}" for r in runs)
        lines.append(f"- {config.label}: {values}")
    lines += ["", threshold_line(results)]
    return "\n".join(lines) + "\n"


FIGURE_METRICS = ("mBIoU", "maxF", "MAE_binary", "SAD")
PANEL = (460, 300)  # pixels per panel of the figure
# one per configuration, in CONFIGURATIONS' order (the views-kept rows paler than their kin)
COLOURS = [(120, 120, 120), (180, 200, 230), (110, 160, 220), (90, 190, 150), (215, 225, 240),
           (170, 200, 235), (220, 90, 60), (240, 170, 80), (170, 120, 200)]


def figure(results: list, path: Path) -> None:
    """A 2 x 2 grid of bar charts (one metric each): bar = mean over seeds, whisker = +/- one
    standard deviation, dots = the seeds."""
    means = summary(results)
    width, height = PANEL
    sheet = Image.new("RGB", (2 * width, 2 * height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for p, key in enumerate(FIGURE_METRICS):
        x0, y0 = (p % 2) * width, (p // 2) * height
        left, right, top, bottom = x0 + 50, x0 + width - 10, y0 + 30, y0 + height - 40
        cells = [means[c.name][key] for c in CONFIGURATIONS]
        top_value = max(max(v for v in values) for _, _, values in cells)
        top_value = max(top_value, max(m + s for m, s, _ in cells)) * 1.1 or 1.0
        direction = "lower is better" if key in LOWER_IS_BETTER else "higher is better"
        test = "matting test" if key == "SAD" else "thin-structure test"
        draw.text((left, y0 + 8), f"{column(key)}, {direction}, {test}", fill=(0, 0, 0))
        draw.line([left, top, left, bottom, right, bottom], fill=(0, 0, 0))
        for tick in range(5):
            value = top_value * tick / 4
            y = bottom - (bottom - top) * tick / 4
            draw.line([left - 4, y, left, y], fill=(0, 0, 0))
            draw.text((x0 + 4, y - 6), f"{value:.3g}", fill=(0, 0, 0))
        slot = (right - left) / len(CONFIGURATIONS)

        def y_of(v, bottom=bottom, top=top, top_value=top_value):  # this panel's value -> pixel
            return bottom - (bottom - top) * v / top_value

        for i, (config, (mean, spread, values)) in enumerate(zip(CONFIGURATIONS, cells)):
            cx = left + slot * (i + 0.5)
            draw.rectangle([cx - slot * 0.35, y_of(mean), cx + slot * 0.35, bottom],
                           fill=COLOURS[i], outline=(0, 0, 0))
            if len(values) > 1:
                draw.line([cx, y_of(mean - spread), cx, y_of(mean + spread)], fill=(0, 0, 0),
                          width=2)
                for v in values:
                    draw.ellipse([cx - 3, y_of(v) - 3, cx + 3, y_of(v) + 3], fill=(0, 0, 0))
            label = config.name
            draw.text((cx - 3 * len(label), bottom + 6 + 12 * (i % 2)), label, fill=(0, 0, 0))
    png = io.BytesIO()
    sheet.save(png, format="PNG")
    outputs.write_bytes(png.getvalue(), path)


# ----------------------------------------------------------------------------------------------
# Per kind: where a module helps and where it does not
# ----------------------------------------------------------------------------------------------


BOUND_STEPS, BOUND_LR = 200, 1.0  # Adam on the free grid: more steps barely change what it reaches


def upsampling_matrices(side: int, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(R, C), (h, side) and (w, side): sam.postprocess_masks of a (side, side) grid G is R G C^T.

    Bilinear resizing and cropping act on rows and columns apart, and keep a constant map constant,
    so the grid with ones on row i alone comes out as R's column i repeated along the rows (and the
    same for the columns); tests/test_ablate.py checks the product against postprocess_masks."""
    input_size = preprocess_shape(h, w, STANDIN_FRAME)
    basis = torch.eye(side).reshape(side, 1, side, 1).expand(side, 1, side, side)
    rows = postprocess_masks(basis, STANDIN_FRAME, input_size, (h, w))[:, 0, :, 0]  # (side, h)
    cols = postprocess_masks(basis.transpose(2, 3), STANDIN_FRAME, input_size, (h, w))
    return rows.T.contiguous(), cols[:, 0, 0, :].T.contiguous()


def fitted_bound(truth: np.ndarray, side: int, region=None) -> tuple[np.ndarray, np.ndarray]:
    """What a map on a grid of `side` cells per frame side can reach on one image, found by fitting:
    a free grid of values, up-sampled exactly as the predictors up-sample (sam.postprocess_masks:
    bilinear to the frame, crop, bilinear to the image's size; as upsampling_matrices while
    fitting), fitted to the GT by Adam (BOUND_STEPS steps, the rate decaying linearly from
    BOUND_LR) with the loss of what is scored.

    A mask (region None): the grid holds logits, fitted with BCE + soft IoU (L_seg's first terms);
    returns the probability sigmoid(up-sampled logits) as uint8 and the mask (logits > 0). A matte
    (region: the trimap's unknown pixels): the grid holds sigmoid(free values), an alpha up-sampled
    as SamaPredictor up-samples its alpha, fitted with L1 on the region (SAD); returns the alpha as
    uint8 (twice). The fit finds a map the grid can give, so the score reached is a lower estimate
    of the grid's best: "reachable at" that resolution, not a proven ceiling."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # maps this small: more threads cost more than they give
    try:
        return _fit(truth, side, region)
    finally:
        torch.set_num_threads(threads)


def _fit(truth: np.ndarray, side: int, region) -> tuple[np.ndarray, np.ndarray]:
    """fitted_bound's work."""
    h, w = truth.shape
    rows, cols = upsampling_matrices(side, h, w)
    target = torch.from_numpy(truth.astype(np.float32) / 255.0)[None, None]
    if region is None:
        target = (target > 128 / 255).float()  # the GT as the scores binarise it
    valid = None if region is None else torch.from_numpy(region)[None, None].float()
    grid = torch.zeros(side, side, requires_grad=True)
    optimiser = torch.optim.Adam([grid], lr=BOUND_LR)
    # the step shrinks linearly to 0: L1's gradient never does
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda k: 1 - k / BOUND_STEPS)
    for _ in range(BOUND_STEPS):
        if region is None:
            logits = (rows @ grid @ cols.T)[None, None]
            loss = bce_loss(logits, target) + iou_loss(torch.sigmoid(logits), target)
        else:
            loss = l1_loss((rows @ torch.sigmoid(grid) @ cols.T)[None, None], target, valid)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
    with torch.no_grad():  # the map the predictors' own up-sampling makes of the fitted grid
        values = grid if region is None else torch.sigmoid(grid)
        values = postprocess_masks(values[None, None], STANDIN_FRAME,
                                   preprocess_shape(h, w, STANDIN_FRAME), (h, w))[0, 0]
    if region is None:
        soft = torch.sigmoid(values).numpy()
        return np.round(soft * 255).astype(np.uint8), values.numpy() > 0
    alpha = np.round(values.clamp(0, 1).numpy() * 255).astype(np.uint8)
    return alpha, alpha


# the pixels of a matte's unknown region by its GT alpha (0-255): where a matte's SAD comes from
ALPHA_PARTS = {"opaque": lambda gt: gt == 255, "partial": lambda gt: (gt > 0) & (gt < 255),
               "clear": lambda gt: gt == 0}


def per_kind(out: Path) -> str:
    """The study's test predictions (OUT/eval) scored per kind, as a markdown table: the whole thin
    split by MAE of the probability map (soft) and of the mask (binary), and by the fractions of
    pixels the mask adds to the GT (> 128; FP) or misses (FN); thin structures (synthetic.thin_kind:
    image index mod the number of kinds) by the mask's IoU and its area over the GT's (above 1: the
    mask is too thick or fills holes); mattes (synthetic.matte_kind, by foreground index) by SAD in
    the unknown region. The held-out kinds' splits come last, their columns marked "(held out)".
    A second table splits each matting split's SAD by the GT's alpha (ALPHA_PARTS).
    The masks are the ones evaluate.py wrote (mask/). Each cell is the mean over the
    configuration's seeds of the mean over that kind's images. Two more rows score what a map on
    the output grids can reach (fitted_bound): SAMA's heads at 8G and SAM's masks at 4G."""
    if not (out / "results.json").is_file():
        raise StudyError(f"{out / 'results.json'}: missing; run the study into {out} first")
    results = json.loads((out / "results.json").read_text())["results"]
    limit = QUICK_IMAGES if results[0]["settings"]["quick"] else None  # the images it scored
    bench = out / "bench"
    # every test image once: (test, kind, stem, GT, trimap's unknown region or None)
    images, kinds = [], {}  # kinds: {test: its kinds in order of appearance}
    for test, (split, _, folder, _) in TESTS.items():
        matting = test.startswith("matting")
        pairs = (readers.composition1k_pairs(bench / folder) if matting
                 else readers.dis_pairs(bench / folder, split))[:limit]
        for files in pairs:
            stem = Path(files[1]).stem
            index = int(stem.split("_")[1])  # DIS-TE1_0007, test_0007_2 -> 7
            kind = (synthetic.matte_kind if matting else synthetic.thin_kind)(
                KIND_STREAMS[test], index)
            kinds.setdefault(test, {})[kind] = None
            region = readers.load_mask(files[2]) == 128 if matting else None
            images.append((test, kind, stem, readers.load_mask(files[1]), region))

    def saved(run: str):  # the maps a run of the study wrote: (probability or alpha, mask or None)
        def read(test: str, stem: str, gt: np.ndarray, region) -> tuple:
            folder = eval_folder(out, run, test)
            pred = scoring.read_png(folder / "pred" / f"{stem}.png", gt.shape)
            mask = None if region is not None else scoring.read_png(
                folder / "mask" / f"{stem}.png", gt.shape)
            if pred is None or (region is None and mask is None):
                raise StudyError(f"{folder}: the prediction or mask of {stem} is missing (a study "
                                 f"scored before like-for-like scoring?)")
            return pred, None if mask is None else mask >= 128
        return read

    def fitted(side: int):  # the bound at one grid; a matte's alpha is shared by its composites
        cache = {}

        def read(test: str, stem: str, gt: np.ndarray, region) -> tuple:
            key = (gt.tobytes(), None if region is None else region.tobytes())
            if key not in cache:
                cache[key] = fitted_bound(gt, side, region)
            return cache[key]
        return read

    runs = []  # (row, [one reader per seed])
    for config in CONFIGURATIONS:
        names = sorted(run_name(r["configuration"], r["seed"]) for r in results
                       if r["configuration"] == config.name)
        if names:
            runs.append((config.name, [saved(name) for name in names]))
    for row, side in (("reachable at 8G (fitted)", STANDIN_FRAME // 2),
                      ("reachable at 4G (fitted)", STANDIN_FRAME // 4)):
        runs.append((row, [fitted(side)]))

    rows = []
    for row, reads in runs:
        cells = {}  # (kind, metric) -> [value per image, over every seed]
        for read in reads:
            for test, kind, stem, gt, region in images:
                pred, mask = read(test, stem, gt, region)
                if region is not None:  # a matte
                    alpha, truth = pred / 255.0, gt / 255.0
                    cells.setdefault((kind, "SAD"), []).append(
                        matting_scores(alpha, truth, region)["SAD"])
                    for part, where in ALPHA_PARTS.items():  # SAD's sum, part by part
                        error = np.abs(alpha - truth)[region & where(gt)].sum() / 1000
                        cells.setdefault((test, part), []).append(float(error))
                    continue
                target = gt > 128
                scores = seg_scores(pred, target, mask)  # the study's rules (evaluate.py's)
                cells.setdefault((kind, "IoU"), []).append(mask_iou(mask, target))
                cells.setdefault((kind, "area"), []).append(
                    float(mask.sum() / max(1, target.sum())))
                for key in ("MAE", "MAE_binary", "FP", "FN") if test == "thin" else ():
                    cells.setdefault(("all", key), []).append(float(scores[key]))
        rows.append((row, {k: float(np.mean(v)) for k, v in cells.items()}))

    columns = [("all", m) for m in ("MAE", "MAE_binary", "FP", "FN")]
    for test in SEEN + HELDOUT:  # the kinds the test splits hold, the held-out ones last
        metrics = ("SAD",) if test.startswith("matting") else ("IoU", "area")
        columns += [(k, m) for k in kinds.get(test, ()) for m in metrics]
    heldout = {k for test in HELDOUT for k in kinds.get(test, ())}
    names = {"IoU": "IoU (binary)", "area": "area (binary)", "SAD": "SAD"}
    lines = ["| configuration | " + " | ".join(
                 f"{k}{' (held out)' if k in heldout else ''} {names.get(m) or column(m)}"
                 for k, m in columns) + " |",
             "|---" * (1 + len(columns)) + "|"]
    digits = {"IoU": 3, "area": 2, "SAD": 2}
    for row, cell in rows:
        values = [f"{cell[k, m]:.{digits.get(m, 4)}f}" for k, m in columns]
        lines.append(f"| {row} | " + " | ".join(values) + " |")

    # where the mattes' SAD lies: the unknown band's pixels by the GT's alpha
    parts = [(test, part) for test in ("matting", "matting-heldout") if test in kinds
             for part in ALPHA_PARTS]
    lines += ["", "The mattes' SAD by the GT's alpha in the trimap's unknown region (opaque: 255, "
              "partial: 1-254, clear: 0; the three sum to the SAD of the split's images):", "",
              "| configuration | " + " | ".join(
                  f"{'held-out' if test in HELDOUT else 'seen'} kinds SAD ({part})"
                  for test, part in parts) + " |",
              "|---" * (1 + len(parts)) + "|"]
    for row, cell in rows:
        lines.append(f"| {row} | " + " | ".join(f"{cell[k]:.2f}" for k in parts) + " |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("runs/ablation"), help="the study's folder")
    p.add_argument("--seeds", type=int, nargs="+", help="one run per seed (default 0 1 2)")
    p.add_argument("--jobs", type=int, help="runs at once, one thread each (default 2)")
    p.add_argument("--quick", action="store_true",
                   help=f"{QUICK_RECIPE['steps']} steps, {QUICK_IMAGES} test images: a smoke test")
    p.add_argument("--per-kind", action="store_true",
                   help="after the study: score its predictions per kind into OUT/per_kind.md")
    args = p.parse_args(argv)
    return outputs.run_main(lambda: checked_study(args),
                            {StudyError: 2, CommandError: 2, readers.DataError: 2,
                             outputs.WriteError: 2},
                            "interrupted; the same command continues (finished runs are kept)")


def checked_study(args) -> int:
    """The options checked before any work, then the study (or --per-kind) holding --out."""
    given = [o for o in ("seeds", "jobs", "quick") if getattr(args, o) not in (None, False)]
    if args.per_kind and given:  # it scores the study in --out as that was run
        raise OptionError(f"--{given[0]}: --per-kind scores the study already in --out; "
                          f"leave it out")
    args.seeds = [0, 1, 2] if args.seeds is None else args.seeds
    args.jobs = 2 if args.jobs is None else args.jobs
    if args.jobs < 1:
        raise OptionError(f"--jobs {args.jobs}: must be 1 or more")
    if len(set(args.seeds)) != len(args.seeds) or min(args.seeds) < 0:
        raise OptionError(f"--seeds {args.seeds}: must be distinct, 0 or more")
    if not STANDIN_SAM.is_file():
        raise OptionError(f"{STANDIN_SAM}: missing (see README: python -m miniature.pretrain_sam)")
    args.out = args.out.absolute()  # the children run in the repository, not here
    with outputs.claim(args.out):  # one study at a time in --out
        return study(args)


def study(args) -> int:
    if args.per_kind:
        table = per_kind(args.out)
        table = (f"# The study per kind\n\nPrinted by `python -m miniature.ablate --per-kind` at "
                 f"{provenance()}, from the study's test predictions.\n\n{table}")
        outputs.write_text(table, args.out / "per_kind.md")
        print(table + f"wrote {args.out / 'per_kind.md'}")
        return 0
    t0 = time.time()
    bench = args.out / "bench"
    if not (bench / "manifest.json").is_file():
        print(f"writing the synthetic benchmark to {bench}")
        synthetic.write_benchmark(bench, seed=0)
    settings = {"recipe": QUICK_RECIPE if args.quick else RECIPE, "quick": args.quick,
                "scoring": SCORING,
                "sam_sha256": outputs.sha256_file(STANDIN_SAM),
                "sama_tensors": sama_tensor_shapes(),
                "bench": json.loads((bench / "manifest.json").read_text())["seed"]}
    # the longest runs first, so that the last ones to start are short
    jobs = [(c, s) for c in CONFIGURATIONS if c.options is not None for s in args.seeds]
    jobs.sort(key=lambda job: ("--tasks" in job[0].options, "--no-mvle" in job[0].options))
    jobs.append((CONFIGURATIONS[0], 0))
    made = sum(not (run_folder(args.out, c, s) / "result.json").is_file()
               for c, s in jobs)  # the others are reused
    print(f"{len(jobs)} runs ({made} to make), {args.jobs} at a time, into {args.out}")
    results = []
    with ThreadPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(one_run, c, s, args.out, settings, 1) for c, s in jobs]
        try:
            for (config, seed), future in zip(jobs, futures):
                result = future.result()
                results.append(result)
                what = config.name if config.options is None else f"{config.name} seed {seed}"
                print(f"  {what}: {json.dumps(result['scores'])} ({result['seconds']:.0f} s)",
                      flush=True)
        except BaseException:  # an error or an interrupt: no run starts, the running ones end
            pool.shutdown(wait=False, cancel_futures=True)
            for child in list(RUNNING):
                child.terminate()
            raise
    minutes = (time.time() - t0) / 60
    recipe = settings["recipe"]
    run_minutes = sum(r["seconds"] for r in results) / 60
    seeds = ", ".join(map(str, args.seeds))
    header = (f"Printed by `python -m miniature.ablate{' --quick' if args.quick else ''}` at "
              f"{provenance()}; {os.cpu_count()} CPU cores, {args.jobs} runs at a time: "
              f"{made} of the {len(jobs)} runs made by this invocation in {minutes:.0f} min "
              f"wall-clock; the runs' own times sum to {run_minutes:.0f} min. "
              f"Seeds {seeds}; "
              f"{recipe['steps']} steps of batch {recipe['batch_size']} per task, Adam lr "
              f"{recipe['lr']:g}, {recipe['warmup_steps']} warm-up steps; stand-in SAM sha256 "
              f"{settings['sam_sha256'][:12]}...")
    results = rescored(args.out, results)  # F^w, S-measure, E-measure from the saved evaluations
    found = contrasts(args.out, results)
    table = markdown(results, header, found)
    picks, edge = threshold_picks(results)
    outputs.write_text(json.dumps({"header": header, "results": results, "contrasts": found,
                                   "threshold_grid": list(scoring.THRESHOLDS),
                                   "threshold_picks": picks, "threshold_edge": edge},
                                  indent=2) + "\n", args.out / "results.json")
    outputs.write_text(table, args.out / "ablation.md")
    figure(results, args.out / "ablation.png")
    print(table)
    print(f"wrote {args.out / 'ablation.md'}, {args.out / 'ablation.png'} and "
          f"{args.out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
