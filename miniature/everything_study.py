"""Every object of a drawn scene: the stand-in SAM's thresholds for automatic mask generation,
chosen on validation scenes, then the objects found and SAMA's refinement, measured on test scenes.

    python -m miniature.everything_study            # choose, record, measure (a few minutes)
    python -m miniature.everything_study --measure  # measure with the recorded thresholds only

A scene (`scene(seed)`) holds 3-4 objects of the stand-in's own kinds (its pre-training corpus,
synthetic.py): solid shapes, solid shapes with thin appendages, sticks and outlines 2-6 px wide,
each in a cell of a 2 x 2 grid on a textured background, drawn with synthetic.py's functions. The
validation scenes (VAL_SEEDS) choose the thresholds, the test scenes (TEST_SEEDS) measure them;
no seed is in both.

Choosing: every pair of GRID_PRED_IOU x GRID_STABILITY runs predictor.py's filters and box NMS
(the other settings Meta's) on each validation scene's 3 x 32 x 32 masks; an object is found when a
kept mask covers it at IoU >= FOUND_IOU, a kept mask is spurious when it covers no object so. The
pair chosen is the one with the fewest spurious masks per scene among those whose found share is
within SHARE_SLACK of the grid's best (DESIGN.md). It is written, with the stand-in's SHA-256, to
weights/sam_standin.everything.json, where settings_for reads it.

Measuring, on the test scenes with the recorded thresholds and the shipped SAMA stand-in: the
share of objects found at IoU >= 0.5, and on the found ones SAM's found mask against SAMA's
refinement from its box (mIoU, mBIoU), as mean and spread (standard deviation) over scenes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch

from load_sam_weights import STANDIN_SAM, STANDIN_SAMA, load_sam
from metrics import boundary_iou, mask_iou
from miniature import synthetic
from outputs import run_main, write_text
from predictor import (
    Candidates,
    Predictor,
    Settings,
    find_objects,
    mask_boxes,
    nms,
    passes,
    point_grid,
    point_masks,
    points_per_batch,
    refine,
    sam_embedding,
    settings_for,
    thresholds_file,
)

VAL_SEEDS = range(0, 24)
TEST_SEEDS = range(1000, 1024)
SCENE_STREAM = 100  # the scenes' generator: np.random.default_rng([SCENE_STREAM, seed])
KINDS = ("solid", "appendages", "stick", "outline")
KIND_P = (0.55, 0.2, 0.125, 0.125)  # the corpus's mix, thin kinds somewhat more often
THIN = {"appendages", "stick", "outline"}
FOUND_IOU = 0.5
GRID_PRED_IOU = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.88)
GRID_STABILITY = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95)
SHARE_SLACK = 0.02


# ----------------------------------------------------------------------------------------------
# Scenes
# ----------------------------------------------------------------------------------------------


def scene_object(rng: np.random.Generator, h: int, w: int, cell: tuple, kind: str) -> np.ndarray:
    """(h, w) coverage of one object of `kind` inside cell (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = cell
    lo, hi = (0.25, 0.4) if kind == "appendages" else (0.55, 0.9)  # appendages reach 2x further
    p = synthetic.Placement.random(rng, y1 - y0, x1 - x0, lo, hi)
    p.cx, p.cy = p.cx + x0, p.cy + y0
    layer = synthetic.Layer(h, w, window=p.window(h, w, 2.4 if kind == "appendages" else 1.5))
    if kind == "stick":
        layer.line(p(np.array([[-1.0, 0.0], [1.0, 0.0]])), rng.uniform(2.0, 6.0))
    elif kind == "outline":
        outline = p(synthetic._outline(rng, str(rng.choice(["ellipse", "rect", "polygon"]))))
        layer.line(np.concatenate([outline, outline[:1]]), rng.uniform(2.0, 6.0))
    else:
        synthetic.draw_solid(rng, layer, p, str(rng.choice(synthetic.SOLID_KINDS)))
        if kind == "appendages":
            synthetic.draw_appendages(rng, layer, p)
    return layer.coverage()


def scene(seed: int) -> tuple[np.ndarray, list[np.ndarray], list[str]]:
    """Scene `seed`: image (H, W, 3) uint8, the objects' visible masks (H, W) bool (those of
    64 px or more) and their kinds."""
    rng = np.random.default_rng([SCENE_STREAM, seed])
    h, w = synthetic.image_size(rng)
    rows, cols = 2, 2
    cells = [(w * c // cols, h * r // rows, w * (c + 1) // cols, h * (r + 1) // rows)
             for r in range(rows) for c in range(cols)]
    n = int(rng.integers(3, 5))
    image = synthetic.background(rng, h, w, clutter=0.0)
    alphas, kinds = [], []
    for k in rng.permutation(len(cells))[:n]:
        kinds.append(str(rng.choice(KINDS, p=KIND_P)))
        alphas.append(scene_object(rng, h, w, cells[k], kinds[-1]))
        image = synthetic.paint(rng, image, alphas[-1], rng.uniform(0, 40))
    masks, kept, above = [], [], np.ones((h, w), np.float32)
    for a, kind in zip(reversed(alphas), reversed(kinds)):  # visible: not covered by later ones
        visible = a * above > 0.5
        if visible.sum() >= 64:
            masks.append(visible)
            kept.append(kind)
        above *= 1 - a
    return synthetic.with_noise(rng, image), masks[::-1], kept[::-1]


# ----------------------------------------------------------------------------------------------
# Choosing the thresholds on validation scenes
# ----------------------------------------------------------------------------------------------


@torch.no_grad()
def scored_candidates(predictor: Predictor, image: np.ndarray, masks: list[np.ndarray]) -> dict:
    """Every grid point's three masks (no filter yet), as predictor.generate makes them: predicted
    IoU, stability, box (N, 4) and IoU with each object (N, objects)."""
    predictor.set_image(image)
    inner, sam, base = predictor.predictor, predictor.sam, Settings()
    h, w = inner.original_size
    grid = point_grid(base.points_per_side) * np.array([w, h])
    gt = torch.as_tensor(np.stack(masks), device=sam.device)  # (objects, H, W)
    parts = []
    step = points_per_batch(base, (h, w))
    for i in range(0, len(grid), step):
        c = point_masks(sam, sam_embedding(predictor), inner.input_size,
                                  (h, w), grid[i:i + step], base.stability_score_offset)
        m = c.masks > sam.mask_threshold  # (n, H, W)
        inter = (m[:, None] & gt[None]).flatten(2).sum(-1)  # (n, objects)
        union = (m[:, None] | gt[None]).flatten(2).sum(-1)
        parts.append((c.predicted_iou, c.stability, mask_boxes(m), inter / union))
    return {name: torch.cat([p[j] for p in parts]).cpu() for j, name in
            enumerate(("predicted_iou", "stability", "boxes", "gt_iou"))}


def selected(c: dict, settings: Settings) -> torch.Tensor:
    """The candidates generate keeps with these settings: the filters, then box NMS."""
    scores = Candidates(None, c["predicted_iou"], c["stability"], None)
    index = torch.nonzero(passes(scores, settings)).flatten()
    return index[nms(c["boxes"][index], c["predicted_iou"][index],
                               settings.box_nms_thresh)]


def grid_scores(candidates: list[dict]) -> list[dict]:
    """For each threshold pair: the share of objects found and the spurious masks per scene."""
    rows = []
    for t_iou in GRID_PRED_IOU:
        for t_stab in GRID_STABILITY:
            settings = Settings(pred_iou_thresh=t_iou, stability_score_thresh=t_stab)
            found = objects = spurious = kept = 0
            for c in candidates:
                gt_iou = c["gt_iou"][selected(c, settings)]  # (kept, objects)
                objects += gt_iou.shape[1]
                if len(gt_iou):
                    found += int((gt_iou.max(0).values >= FOUND_IOU).sum())
                    spurious += int((gt_iou.max(1).values < FOUND_IOU).sum())
                kept += len(gt_iou)
            rows.append({"pred_iou_thresh": t_iou, "stability_score_thresh": t_stab,
                         "found": found / objects, "spurious": spurious / len(candidates),
                         "kept": kept / len(candidates)})
    return rows


def choose(rows: list[dict]) -> dict:
    """The fewest spurious masks among the pairs within SHARE_SLACK of the best found share (ties:
    the higher thresholds)."""
    best = max(r["found"] for r in rows)
    near = [r for r in rows if r["found"] >= best - SHARE_SLACK]
    return min(near, key=lambda r: (r["spurious"], -r["pred_iou_thresh"],
                                    -r["stability_score_thresh"]))


# ----------------------------------------------------------------------------------------------
# Measuring on test scenes
# ----------------------------------------------------------------------------------------------


def measure(predictor: Predictor, settings: Settings) -> dict:
    """Per test scene: the share found and, on the found objects, SAM's and SAMA's IoU and BIoU
    (SAMA refined from the box of the kept mask that covers the object best); beside them, like
    for like, SAM's mask from that same box (the predictor's "sam" map of the same call)."""
    per_scene, per_kind = [], {"solid": [0, 0], "thin": [0, 0]}
    for seed in TEST_SEEDS:
        image, masks, kinds = scene(seed)
        predictor.set_image(image)
        found = find_objects(predictor, settings)
        rows = []
        for gt, kind in zip(masks, kinds):
            ious = [mask_iou(f.mask, gt) for f in found]
            j = int(np.argmax(ious)) if ious else -1
            hit = j >= 0 and ious[j] >= FOUND_IOU
            per_kind["thin" if kind in THIN else "solid"][0] += hit
            per_kind["thin" if kind in THIN else "solid"][1] += 1
            if hit:
                maps = refine(predictor, [found[j].box])[0]
                sama, sam_box = maps["mask"], maps["sam"]
                rows.append((ious[j], boundary_iou(found[j].mask, gt), mask_iou(sama, gt),
                             boundary_iou(sama, gt), mask_iou(sam_box, gt),
                             boundary_iou(sam_box, gt)))
        scores = np.mean(rows, axis=0) if rows else np.full(6, np.nan)
        per_scene.append({"seed": seed, "objects": len(masks), "kept": len(found),
                          "found": len(rows) / len(masks), "sam_iou": scores[0],
                          "sam_biou": scores[1], "sama_iou": scores[2], "sama_biou": scores[3],
                          "sam_box_iou": scores[4], "sam_box_biou": scores[5]})
    return {"scenes": per_scene, "per_kind": per_kind}


def mean_spread(values) -> str:
    v = np.asarray([x for x in values if not np.isnan(x)])
    return f"{v.mean():.3f} +- {v.std(ddof=1):.3f}"


def report(result: dict) -> str:
    s = result["scenes"]
    lines = [f"test scenes {TEST_SEEDS.start}-{TEST_SEEDS.stop - 1} ({len(s)}, "
             f"{sum(r['objects'] for r in s)} objects); mean +- standard deviation over scenes:",
             f"  masks kept per scene       {mean_spread([r['kept'] for r in s])}",
             f"  found at IoU >= {FOUND_IOU}        {mean_spread([r['found'] for r in s])}"]
    for kind, (hit, n) in result["per_kind"].items():
        lines.append(f"    {kind:<6} objects found   {hit}/{n} ({hit / n:.1%})")
    lines += ["  on the found objects (scenes with one):",
              f"    SAM's found mask  mIoU {mean_spread([r['sam_iou'] for r in s])}   mBIoU "
              f"{mean_spread([r['sam_biou'] for r in s])}",
              f"    SAMA from its box mIoU {mean_spread([r['sama_iou'] for r in s])}   mBIoU "
              f"{mean_spread([r['sama_biou'] for r in s])}",
              f"    SAM from that box mIoU {mean_spread([r['sam_box_iou'] for r in s])}   mBIoU "
              f"{mean_spread([r['sam_box_biou'] for r in s])}"]
    gain = [r["sama_iou"] - r["sam_iou"] for r in s]
    bgain = [r["sama_biou"] - r["sam_biou"] for r in s]
    lines.append(f"    SAMA - SAM's found mIoU {mean_spread(gain)}   mBIoU {mean_spread(bgain)}")
    gain = [r["sama_iou"] - r["sam_box_iou"] for r in s]
    bgain = [r["sama_biou"] - r["sam_box_biou"] for r in s]
    lines.append(f"    SAMA - SAM, same box mIoU {mean_spread(gain)}   mBIoU {mean_spread(bgain)}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--measure", action="store_true",
                   help="measure on the test scenes with the recorded thresholds only")
    args = p.parse_args(argv)
    return run_main(lambda: study(args), {})


def study(args) -> int:
    torch.manual_seed(0)
    start = time.perf_counter()
    if not args.measure:
        sam_predictor = Predictor(load_sam(STANDIN_SAM))
        candidates = [scored_candidates(sam_predictor, *scene(seed)[:2]) for seed in VAL_SEEDS]
        rows = grid_scores(candidates)
        print(f"validation scenes {VAL_SEEDS.start}-{VAL_SEEDS.stop - 1}: found share / spurious "
              f"masks per scene (rows: pred_iou_thresh; columns: stability_score_thresh)")
        print("       " + "".join(f"{t:>12}" for t in GRID_STABILITY))
        for t_iou in GRID_PRED_IOU:
            cells = [r for r in rows if r["pred_iou_thresh"] == t_iou]
            print(f"  {t_iou:<5}" + "".join(f" {r['found']:.3f}/{r['spurious']:5.2f}"
                                            for r in cells), flush=True)
        chosen = choose(rows)
        record = {"sam_sha256": sam_predictor.sam.checkpoint_record.sha256,
                  "pred_iou_thresh": chosen["pred_iou_thresh"],
                  "stability_score_thresh": chosen["stability_score_thresh"],
                  "chosen_by": "python -m miniature.everything_study",
                  "validation": {"seeds": [VAL_SEEDS.start, VAL_SEEDS.stop - 1],
                                 "found": round(chosen["found"], 4),
                                 "spurious_per_scene": round(chosen["spurious"], 3)}}
        path = thresholds_file(STANDIN_SAM)
        write_text(json.dumps(record, indent=1) + "\n", path)
        print(f"chosen: pred_iou_thresh {chosen['pred_iou_thresh']}, stability_score_thresh "
              f"{chosen['stability_score_thresh']} (found {chosen['found']:.3f}, spurious "
              f"{chosen['spurious']:.2f} per scene); written to {path}")
    predictor = Predictor.from_checkpoint(STANDIN_SAMA, STANDIN_SAM)
    settings = settings_for(predictor.sam)
    print(f"thresholds: pred_iou_thresh {settings.pred_iou_thresh}, stability_score_thresh "
          f"{settings.stability_score_thresh} ({thresholds_file(STANDIN_SAM).name})")
    print(report(measure(predictor, settings)))
    print(f"({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
