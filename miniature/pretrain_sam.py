"""Pre-train the stand-in SAM on the synthetic corpus (synthetic.py), in the official format.

    python -m miniature.pretrain_sam --out weights/sam_standin.pth  # the shipped file; one thread

The official SAM weights cannot be downloaded here, so the miniature runs on a small SAM (the "tiny"
variant: 256 px frame, 16 x 16 tokens, 4G = 64 px masks) trained the way SAM was (Kirillov et al.
2023, "Segment Anything", Sec. 3 and its appendix), on an unbounded corpus of drawn scenes:

- the whole model learns, from random weights (pretraining the encoder as a masked autoencoder,
  as SAM did, is left out);
- each image gives up to TARGETS objects, each prompted PROMPTS_PER_TARGET times, one kind drawn
  per prompt (PROMPT_KINDS): a noisy box, one positive point (ambiguous: multimask output, only the
  best of the three masks learns), 2-6 positive / negative points, or the noisy mask input with a
  box or with points; single-mask output for all but the one point;
- mask loss 20 focal (gamma 2, no class weight) + 1 dice (SAM's ratio), on the logits upsampled
  bilinearly to the frame as the predictor does, padding excluded; the IoU head learns the IoU of
  its own mask (logits > 0) with the target, mean squared error, weight 1;
- AdamW (beta 0.9 / 0.999, weight decay 0.1 on weight matrices, as SAM), linear warm-up, cosine
  decay.

Every VAL_EVERY steps it scores the solid validation set (synthetic.solid_pair, split DIS-VD: plain
solid shapes) with GT-box prompts, mIoU at the GT's resolution, as evaluate.py scores a "seg"
split. The run is deterministic on one thread: the initial weights come from
torch.manual_seed(seed), the corpus is a pure function of (seed, index), the prompt kinds of step t
come from default_rng([seed, t]); the same bytes need the same torch and Pillow builds. The file is
a plain state_dict of every SAM key, float32; its SHA-256 is printed at the end.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

import outputs
from data import MASK_LOGIT, mask_to_box
from load_sam_weights import atomic_save
from metrics import boundary_iou, mask_iou
from miniature import synthetic
from sam import SAM_VARIANTS, Sam, SamPredictor, image_to_frame, preprocess_shape, scale_coords

# ----------------------------------------------------------------------------------------------
# Knobs (the defaults made the shipped file)
# ----------------------------------------------------------------------------------------------

VARIANT = "tiny"  # 256 px frame, 16 x 16 tokens: SAMA's local views need a grid divisible by 16
BATCH = 4  # images per step
TARGETS = 4  # objects per image (SAM: up to 64 masks per image)
PROMPTS_PER_TARGET = 2  # each object is prompted twice, two kinds drawn independently
WARMUP = 250  # steps of linear warm-up (SAM: 250 iterations)
WEIGHT_DECAY = 0.1  # SAM's, on weight matrices only
FOCAL_WEIGHT, DICE_WEIGHT, IOU_WEIGHT = 20.0, 1.0, 1.0  # SAM's 20:1 focal:dice, IoU MSE x1
FOCAL_GAMMA = 2.0  # Lin et al. 2017; no class weight alpha (their 0.25 under-segmented: DESIGN.md)
LR_FLOOR = 0.02  # the cosine decays to this fraction of the peak
CLIP = 1.0  # gradient-norm clipping
VAL_EVERY = 500
VAL_IMAGES = 48  # the whole solid DIS-VD split of the benchmark


@dataclass(frozen=True)
class PromptKind:
    probability: float
    box: bool
    points: tuple[int, int]  # number of points, inclusive range (0, 0: none)
    mask: bool  # the noisy mask input
    multimask: bool  # three outputs, the best one learns (SAM, for a single point)


PROMPT_KINDS = {
    "box": PromptKind(0.35, True, (0, 0), False, False),
    "point": PromptKind(0.25, False, (1, 1), False, True),
    "points": PromptKind(0.20, False, (2, 6), False, False),
    "box+mask": PromptKind(0.10, True, (0, 0), True, False),
    "points+mask": PromptKind(0.10, False, (1, 6), True, False),
}


# ----------------------------------------------------------------------------------------------
# A batch: corpus samples in SAM's frame
# ----------------------------------------------------------------------------------------------


def _resize(mask: np.ndarray, h: int, w: int) -> np.ndarray:
    """(H, W) bool -> (h, w) float32 in [0, 1], PIL bilinear (the frame's resize of the image)."""
    return np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((w, h), Image.BILINEAR),
                      np.float32) / 255.0


def make_batch(seed: int, step: int, size: int) -> dict:
    """Step `step`'s images (corpus samples step * BATCH ...) and their targets, in frame pixels.

    Returns images (B, 3, S, S) and, per target (N of them): image index (N,), target (N, 1, S, S)
    in [0, 1], valid (N, 1, S, S), box (N, 4), points (N, P, 2), point_labels (N, P),
    mask_input (N, 1, S/4, S/4) logits +/-MASK_LOGIT, kind (list of N names).
    """
    rng = np.random.default_rng([seed, step])
    names, probs = list(PROMPT_KINDS), [k.probability for k in PROMPT_KINDS.values()]
    images, out = [], {k: [] for k in ("index", "target", "valid", "box", "points", "point_labels",
                                       "mask_input", "kind")}
    for b in range(BATCH):
        sample = synthetic.corpus_sample(seed, step * BATCH + b, n_targets=TARGETS)
        h, w = sample["image"].shape[:2]
        nh, nw = preprocess_shape(h, w, size)
        images.append(image_to_frame(sample["image"], size))
        valid = torch.zeros(1, size, size)
        valid[0, :nh, :nw] = 1
        for t in [t for t in sample["targets"] for _ in range(PROMPTS_PER_TARGET)]:
            target = torch.zeros(1, size, size)
            target[0, :nh, :nw] = torch.from_numpy(_resize(t["mask"], nh, nw))
            noisy = torch.zeros(1, 1, size, size)
            noisy[0, 0, :nh, :nw] = torch.from_numpy(_resize(t["mask_input"], nh, nw))
            noisy = F.avg_pool2d(noisy, 4)[0] > 0.5  # (1, S/4, S/4): the mask input's resolution
            out["index"].append(b)
            out["target"].append(target)
            out["valid"].append(valid)
            out["box"].append(torch.from_numpy(
                scale_coords(t["box"].reshape(2, 2), (h, w), size).reshape(4).astype(np.float32)))
            out["points"].append(torch.from_numpy(
                scale_coords(t["points"], (h, w), size).astype(np.float32)))
            out["point_labels"].append(torch.from_numpy(t["point_labels"]))
            out["mask_input"].append(torch.where(noisy, MASK_LOGIT, -MASK_LOGIT))
            out["kind"].append(names[rng.choice(len(names), p=probs)])
    batch = {k: torch.stack(v) if k not in ("index", "kind") else v for k, v in out.items()}
    batch["index"] = torch.tensor(out["index"])
    batch["images"] = torch.stack(images)
    # the number of points of each target's prompt, within its kind's range
    ranges = [PROMPT_KINDS[k].points for k in out["kind"]]
    batch["n_points"] = torch.tensor([int(rng.integers(lo, hi + 1)) for lo, hi in ranges])
    return batch


# ----------------------------------------------------------------------------------------------
# Losses (SAM's): focal + dice on the masks, MSE on the IoU head
# ----------------------------------------------------------------------------------------------


def mask_loss(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """logits (N, M, S, S), target and valid (N, 1, S, S) -> (N, M): 20 focal + 1 dice per mask,
    over valid pixels."""
    target, valid = target.expand_as(logits), valid.expand_as(logits)
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    # focal: (1 - p_t)^gamma CE, p_t the probability of the true class
    p_t = p * target + (1 - p) * (1 - target)
    focal = ((1 - p_t) ** FOCAL_GAMMA * ce * valid).sum((2, 3)) / valid.sum((2, 3))
    # dice: 1 - (2 |p g| + 1) / (|p| + |g| + 1)
    inter = (p * target * valid).sum((2, 3))
    dice = 1 - (2 * inter + 1) / ((p * valid).sum((2, 3)) + (target * valid).sum((2, 3)) + 1)
    return FOCAL_WEIGHT * focal + DICE_WEIGHT * dice


def actual_iou(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(N, M): IoU of each mask (logits > 0) with the target (> 0.5), over valid pixels."""
    pred, gt = (logits > 0) & (valid > 0), (target > 0.5) & (valid > 0)
    inter = (pred & gt).sum((2, 3)).float()
    union = (pred | gt).sum((2, 3)).float()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


def step_loss(sam: Sam, batch: dict) -> tuple[torch.Tensor, dict]:
    """Encode the images once, decode every prompt kind present; the loss averaged over targets."""
    S = sam.config.image_size
    embeddings, _ = sam.image_encoder(batch["images"])  # (B, C, G, G)
    total_mask, total_iou, n = 0.0, 0.0, len(batch["kind"])
    for name, kind in PROMPT_KINDS.items():
        sel = torch.tensor([k == name for k in batch["kind"]])
        if not sel.any():
            continue
        prompts = {}
        if kind.box:
            prompts["boxes"] = batch["box"][sel]
        if kind.points[1] > 0:
            counts = batch["n_points"][sel]
            P = int(counts.max())
            labels = batch["point_labels"][sel][:, :P].clone()
            labels[torch.arange(P)[None] >= counts[:, None]] = -1  # padding: "not a point"
            prompts["points"], prompts["point_labels"] = batch["points"][sel][:, :P], labels
        if kind.mask:
            prompts["mask_inputs"] = batch["mask_input"][sel]
        image_embeddings = embeddings[batch["index"][sel]]  # (n, C, G, G): each target's image
        logits, iou_pred = sam.decode(image_embeddings, multimask_output=kind.multimask, **prompts)
        logits = F.interpolate(logits, (S, S), mode="bilinear", align_corners=False)
        target, valid = batch["target"][sel], batch["valid"][sel]
        losses = mask_loss(logits, target, valid)  # (n, M)
        total_mask = total_mask + losses.min(dim=1).values.sum()  # the best mask learns (M = 1: it)
        iou = actual_iou(logits.detach(), target, valid)
        total_iou = total_iou + ((iou_pred - iou) ** 2).mean(dim=1).sum()
    loss_mask, loss_iou = total_mask / n, total_iou / n
    return loss_mask + IOU_WEIGHT * loss_iou, {"mask": loss_mask.item(), "iou": loss_iou.item()}


# ----------------------------------------------------------------------------------------------
# Validation: GT-box prompts, single-mask output, mIoU at the GT's resolution (evaluate.py's "seg")
# ----------------------------------------------------------------------------------------------


@torch.no_grad()
def box_scores(sam: Sam, pairs) -> dict:
    """pairs [(image (H, W, 3) uint8, gt (H, W) uint8)] -> {"mIoU", "mBIoU", "n"}: SAM's binary mask
    from the tight box of gt > 128, against gt > 128. Leaves the model in eval mode."""
    predictor = SamPredictor(sam.eval())
    ious, bious = [], []
    for image, gt in pairs:
        predictor.set_image(image)
        masks, _, _ = predictor.predict(box=mask_to_box(gt > 128), multimask_output=False)
        ious.append(mask_iou(masks[0], gt > 128))
        bious.append(boundary_iou(masks[0], gt > 128))
    return {"mIoU": float(np.mean(ious)), "mBIoU": float(np.mean(bious)), "n": len(pairs)}


def solid_pairs(seed: int, split: str, n: int) -> list:
    """The first n pairs of a solid split, as the benchmark's files hold them."""
    return [synthetic.solid_pair(seed, split, i) for i in range(n)]


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------


def get_lr(step: int, steps: int, peak: float) -> float:
    """Linear warm-up over WARMUP steps, then cosine from peak down to LR_FLOOR x peak."""
    if step < WARMUP:
        return peak * (step + 1) / WARMUP
    t = (step - WARMUP) / max(1, steps - WARMUP)
    return peak * (LR_FLOOR + (1 - LR_FLOOR) * 0.5 * (1 + math.cos(math.pi * t)))


def pretrain(out: Path, steps: int, lr: float, seed: int, log_every: int) -> dict:
    torch.manual_seed(seed)
    cfg = SAM_VARIANTS[VARIANT]
    sam = Sam(cfg)
    decay = [p for p in sam.parameters() if p.dim() >= 2]
    no_decay = [p for p in sam.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": WEIGHT_DECAY},
              {"params": no_decay, "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999))
    val_pairs = solid_pairs(seed, "DIS-VD", VAL_IMAGES)
    n_params = sum(p.numel() for p in sam.parameters())
    print(f"pre-training SAM {VARIANT} ({n_params:,} parameters) for {steps} steps of {BATCH} "
          f"images x {TARGETS} targets, peak lr {lr}, seed {seed}", flush=True)
    t0 = t_log = time.time()
    scores = {}
    for step in range(steps):
        sam.train()
        for group in optimizer.param_groups:
            group["lr"] = get_lr(step, steps, lr)
        batch = make_batch(seed, step, cfg.image_size)
        loss, terms = step_loss(sam, batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"step {step}: loss is not finite ({terms}); nothing saved")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(sam.parameters(), CLIP)
        optimizer.step()
        if (step + 1) % log_every == 0:
            dt = (time.time() - t_log) / log_every
            t_log = time.time()
            print(f"step {step + 1} loss {loss.item():.4f} mask {terms['mask']:.4f} "
                  f"iou {terms['iou']:.4f} grad_norm {grad_norm.item():.3f} "
                  f"lr {get_lr(step, steps, lr):.2e} s/step {dt:.3f}", flush=True)
        if (step + 1) % VAL_EVERY == 0 or step + 1 == steps:
            scores = box_scores(sam, val_pairs)
            print(f"step {step + 1} val (solid DIS-VD, {scores['n']} images, GT box): "
                  f"mIoU {scores['mIoU']:.4f} mBIoU {scores['mBIoU']:.4f} "
                  f"elapsed {(time.time() - t0) / 60:.1f} min", flush=True)
    state = {k: v.detach().float().contiguous() for k, v in sam.state_dict().items()}
    atomic_save(state, out)  # the official format: a plain state_dict of every SAM key
    return {**scores, "sha256": outputs.sha256_file(out), "minutes": (time.time() - t0) / 60}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="the checkpoint to write (.pth)")
    p.add_argument("--steps", type=int, default=6000, help="optimiser steps (the shipped file's)")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    p.add_argument("--seed", type=int, default=0, help="corpus, prompts and initial weights")
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: the shipped run)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    args = p.parse_args(argv)
    return outputs.run_main(lambda: pretrain_checked(args), {outputs.WriteError: 2},
                            f"interrupted; nothing saved ({args.out} left as it was)")


def pretrain_checked(args) -> int:
    """The options and --out checked before the 65 minutes, not after them; then pretrain."""
    if args.steps < 1 or args.log_every < 1 or args.threads < 1 or not args.lr > 0:
        raise outputs.OptionError("--steps, --log-every and --threads must be >= 1, --lr > 0")
    outputs.check_writable_file(args.out)
    if args.out.exists() and not args.overwrite:
        raise outputs.WriteError(f"--out {args.out}: exists; --overwrite replaces it, or "
                                 f"choose another --out")
    torch.set_num_threads(args.threads)
    result = pretrain(args.out, args.steps, args.lr, args.seed, args.log_every)
    print(f"saved {args.out} ({args.out.stat().st_size / 2**20:.2f} MiB) in "
          f"{result['minutes']:.1f} min: solid DIS-VD mIoU {result['mIoU']:.4f}, "
          f"mBIoU {result['mBIoU']:.4f}; sha256 {result['sha256']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
