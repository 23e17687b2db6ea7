"""Train SAMA on one GPU, many (torchrun), or the CPU.

    python train.py --data ./DIS5K --matting ./AIM --sam-checkpoint sam_vit_l_0b3195.pth
    torchrun --nproc_per_node=8 train.py --data ./DIS5K --matting ./AIM --sam-checkpoint ...
    python train.py --data ./mine --backgrounds ./coco/train2017 --sam-checkpoint ...
        (your own images: mine/{im, gt} masks, mine/{im, alpha} or mine/{fg, alpha} mattes)

SAM stays frozen; MVLE, the Local-Adapters, the SAMA tokens and the heads learn. Each step takes one
segmentation batch and one matting batch, L = L_seg + L_matting (Sec. "Training of SAMA"); each task
runs its own decoder pass, so the matting head is untouched by L_seg and vice versa. Where the paper
is silent the recipe is HQ-SAM's: Adam, lr 1e-3, no weight decay, lr x0.1 after 10 of 12 epochs,
batch 4 per GPU, seed 42 (DESIGN.md, "Training").

Options that another option would make ignored are refused in one line (check_args): --epochs
beside --max-steps, --val-images with --val-every 0. (--tasks is an ablation switch: the data
options stay those of the full recipe, a task switched off leaves its data unread.)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

import data
import losses
import outputs
import readers
import scoring
from frame import NonFiniteOutput
from load_sam_weights import (
    CheckpointError,
    atomic_save,
    holds_weights,
    load_sam,
    read_training_state,
    sam_identity,
    sama_tensors,
    save_sama,
    save_training_state,
)
from sam import SAM_VARIANTS, Sam, compile_image_encoder
from sama import SAMA, TASK_CHOICES

# ----------------------------------------------------------------------------------------------
# Knobs. Defaults are HQ-SAM's recipe where the paper is silent.
# ----------------------------------------------------------------------------------------------


EPOCHS = 12  # --epochs when neither it nor --max-steps is given


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="./DIS5K",
                   help="folder holding DIS-TR and DIS-VD (DIS5K layout), or a folder of your own: "
                        "DIR/{im, gt} (masks), DIR/{im, alpha} or DIR/{fg, alpha} (mattes), "
                        "a share held out for validation")
    p.add_argument(
        "--matting", help="folder holding Combined_Dataset (Adobe Image Matting), or that folder"
    )
    p.add_argument(
        "--thin", help="ThinObject-5K folder (original or HQ-SAM layout), added to segmentation"
    )
    p.add_argument("--aim500", help="AIM-500 folder, added to matting")
    p.add_argument("--d646", help="Distinctions-646 folder: Train/{FG, GT} added to matting, over "
                                  "the backgrounds its Train/bg_train.txt names in --backgrounds")
    p.add_argument("--backgrounds", help="folder of background images for AIM and fg/ folders "
                                         "(default: the segmentation training images); COCO "
                                         "train2017 for --d646")
    p.add_argument("--sam-checkpoint", help="official SAM checkpoint, e.g. sam_vit_l_0b3195.pth")
    p.add_argument(
        "--model", default="vit_l", choices=list(SAM_VARIANTS), help="SAM variant (tiny: tests)"
    )
    p.add_argument(
        "--out", help="output folder (default: runs/sama, with the ablation switches appended)"
    )
    p.add_argument(
        "--batch-size", type=int, default=4, help="per process, for each task (HQ-SAM: 4 per GPU)"
    )
    p.add_argument("--accum-steps", type=int, default=1, help="micro-batches per optimiser step")
    p.add_argument("--epochs", type=int,
                   help=f"default {EPOCHS} (HQ-SAM: 12 epochs, lr x0.1 after 10)")
    p.add_argument(
        "--max-steps", type=int, help="stop after this many optimiser steps (default: --epochs)"
    )
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (HQ-SAM: 1e-3)")
    p.add_argument(
        "--warmup-steps", type=int, default=100, help="linear warm-up from 0 (Adam from scratch)"
    )
    p.add_argument("--clip", type=float, default=1.0, help="gradient-norm clipping")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--tasks", default="both", choices=list(TASK_CHOICES), help="Table 5's ablation")
    p.add_argument("--no-mvle", action="store_true",
                   help="Tables 3-4: without MVLE and its local views")
    p.add_argument("--no-mvle-attention", action="store_true",
                   help="Tables 3-4 read otherwise: the local views' features kept, MVLE's "
                        "cross-attention removed")
    p.add_argument(
        "--no-local-adapter", action="store_true", help="Tables 3-4: without Local-Adapters"
    )
    p.add_argument("--log-every", type=int, default=20)
    p.add_argument("--val-every", type=int, default=1000,
                   help="validate on DIS-VD or the folder's held-out share (maxF, MAE; SAD, MSE "
                        "of its mattes) through the heads trained; 0: never")
    p.add_argument("--val-images", type=int, default=0,
                   help="validate on the first N held-out images of each kind (0: all)")
    p.add_argument("--save-every", type=int, default=500)
    p.add_argument("--workers", type=int, default=4, help="data-loading processes per GPU")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile SAM's image encoder before the first step (time printed)")
    args = p.parse_args(argv)
    if args.no_mvle and args.no_mvle_attention:
        p.error("--no-mvle-attention: --no-mvle already removes MVLE with its attention; "
                "give one of them")
    default = outputs.default_run_dir(args.no_mvle, args.no_mvle_attention,
                                      args.no_local_adapter, args.tasks)
    args.out = args.out or str(default)
    return args


class TrainingError(Exception):
    """A problem that stops training; the message is one line."""


OUTPUTS = ("sama.pt", "last.pt", "log.jsonl")  # what a run writes in --out


def check_args(args) -> None:
    """Every option's value, before any work: one line naming the first bad one."""
    at_least = {"--batch-size": (args.batch_size, 1), "--accum-steps": (args.accum_steps, 1),
                "--epochs": (args.epochs, 1), "--max-steps": (args.max_steps, 1),
                "--warmup-steps": (args.warmup_steps, 0), "--seed": (args.seed, 0),
                "--log-every": (args.log_every, 1), "--val-every": (args.val_every, 0),
                "--val-images": (args.val_images, 0), "--save-every": (args.save_every, 1),
                "--workers": (args.workers, 0)}
    for option, (value, low) in at_least.items():
        if value is not None and value < low:  # --max-steps is None unless given
            raise TrainingError(f"{option} {value}: must be {low} or more")
    for option, value in (("--lr", args.lr), ("--clip", args.clip)):
        if not (math.isfinite(value) and value > 0):
            raise TrainingError(f"{option} {value:g}: must be a finite number above 0")
    if args.max_steps is not None and args.epochs is not None:
        raise TrainingError("--epochs: --max-steps sets the run's length; give one or the other")
    if args.val_images and not args.val_every:
        raise TrainingError("--val-images: --val-every 0 never validates")
    out = Path(args.out)
    outputs.check_writable_folder(out)
    for name in OUTPUTS:
        if (out / name).is_dir():
            raise TrainingError(f"{out / name}: is a folder, where the run writes its {name}; "
                                f"train into another --out")
    last_pt, there = out / "last.pt", outputs.files(out)
    if not args.resume and last_pt.exists():  # a new run would overwrite that run's checkpoints
        raise TrainingError(f"{last_pt}: a training run is there already; --resume continues it, "
                            f"or train into another --out")
    if not args.resume and there:  # a fresh run starts in an empty folder: nothing overwritten
        raise TrainingError(f"{out}: holds {', '.join(there[:3])}{', ...' * (len(there) > 3)} "
                            f"and no last.pt to resume; train into another --out, or empty it")


class NonFiniteLoss(TrainingError):
    """The loss, the gradient or the validation output became NaN or infinite: the run stops
    before saving anything from that step."""


# ----------------------------------------------------------------------------------------------
# Data: endless, resumable batch streams
# ----------------------------------------------------------------------------------------------


class EndlessBatchSampler(torch.utils.data.Sampler):
    """Batches of (epoch, index) keys without end, from batch `taken` of `epoch` on. Each epoch is
    a DistributedSampler permutation (shuffled, seeded by seed + epoch, this rank's share, whole
    batches only), so a resumed or distributed run sees exactly the same batches."""

    def __init__(self, dataset, batch_size: int, world: int, rank: int, seed: int, epoch: int,
                 taken: int) -> None:
        self.sampler = DistributedSampler(
            dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=True
        )
        self.batch_size, self.epoch, self.taken = batch_size, epoch, taken

    def __iter__(self):
        epoch, start = self.epoch, self.taken
        while True:
            self.sampler.set_epoch(epoch)
            indices = list(self.sampler)
            for b in range(start, len(indices) // self.batch_size):
                yield [(epoch, i) for i in indices[b * self.batch_size : (b + 1) * self.batch_size]]
            epoch, start = epoch + 1, 0


class BatchStream:
    """Batches from one dataset without end; (epoch, batches taken) is its whole state.

    One DataLoader iterator serves the whole run (a new one only after load_state_dict): its
    loader processes keep decoding across epoch boundaries, where a loader per epoch would stop,
    start its processes again and wait for their first batches (issue 15 saw a stall at every
    boundary of either stream)."""

    def __init__(
        self, dataset, batch_size: int, world: int, rank: int, seed: int, workers: int
    ) -> None:
        if len(dataset) < batch_size * world:
            raise TrainingError(
                f"{len(dataset)} samples cannot fill one batch of {batch_size} x {world} processes"
            )
        self.dataset, self.batch_size, self.world, self.rank = dataset, batch_size, world, rank
        self.seed, self.workers = seed, workers
        self.batches_per_epoch = len(dataset) // world // batch_size
        self.epoch, self.taken, self.iterator = 0, 0, None

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "taken": self.taken}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.taken, self.iterator = state["epoch"], state["taken"], None

    def next(self) -> dict:
        if self.iterator is None:
            sampler = EndlessBatchSampler(self.dataset, self.batch_size, self.world, self.rank,
                                          self.seed, self.epoch, self.taken)
            loader = DataLoader(
                self.dataset,
                batch_sampler=sampler,
                num_workers=self.workers,
                pin_memory=torch.cuda.is_available(),
                generator=torch.Generator().manual_seed(self.seed),
            )  # leaves the global RNG alone
            self.iterator = iter(loader)
        if self.taken == self.batches_per_epoch:  # the batch below opens the next epoch
            self.epoch, self.taken = self.epoch + 1, 0
        batch = next(self.iterator)
        self.taken += 1
        return batch


def build_datasets(args, image_size: int) -> tuple:
    """Segmentation and matting training sets and the validation items ({"seg": [(image, mask)],
    "matting": [(image, alpha) or (foreground, alpha, background)]}), every file and background
    checked first, and the training files (names and bytes make --resume's data digest). Masks go
    to the segmentation head, mattes to the matting head."""
    seg = mat = None
    trains_seg, trains_mat = ("seg" in TASK_CHOICES[args.tasks],
                              "matting" in TASK_CHOICES[args.tasks])
    if readers.is_plain_folder(args.data):  # a share of each kind held out by a seeded rule
        own = readers.folder_sets(args.data)
        seg_pairs, val_seg = readers.split_held_out(own["masks"])
        natural, val_natural = readers.split_held_out(own["mattes"])
        fg_pairs, val_fg = readers.split_held_out(own["foregrounds"])
    else:
        try:
            seg_pairs = readers.dis_pairs(args.data, "DIS-TR")
        except readers.DataError as e:
            if not readers.is_dis5k(args.data):  # neither layout
                raise readers.DataError(
                    f"{e}, or a folder of your own: {readers.FOLDER_LAYOUT}") from None
            raise
        val_seg = readers.dis_pairs(args.data, "DIS-VD") if args.val_every else []
        natural, val_natural, fg_pairs, val_fg = [], [], [], []
    if args.thin:
        seg_pairs += readers.thin_pairs(args.thin, "train")
    if trains_seg and not seg_pairs:
        raise TrainingError(f"{args.data}: no masks (DIR/{{im,gt}}) for the segmentation head; "
                            f"add them, or use --tasks matting")
    backgrounds, d646 = [], []
    if trains_mat:
        if args.matting:
            fg_pairs += readers.aim_train_pairs(args.matting)
        if args.aim500:
            natural += readers.aim500_pairs(args.aim500)
        if args.backgrounds:
            backgrounds = readers.image_files(args.backgrounds)
        else:
            backgrounds = [image for image, _ in seg_pairs]
        if (fg_pairs or val_fg) and not backgrounds:
            raise TrainingError("foregrounds to composite but no backgrounds: give --backgrounds")
        if args.d646 and not args.backgrounds:
            raise TrainingError("--d646 needs --backgrounds: the folder holding the COCO images "
                                "its Train/bg_train.txt names (train2017)")
        d646 = readers.d646_train_pairs(args.d646, args.backgrounds) if args.d646 else []
    keep = (args.val_images or None) if args.val_every else 0
    # a held-out foreground is validated over background i of the list, the same on every run
    val_fg = [(fg, alpha, backgrounds[i % len(backgrounds)]) for i, (fg, alpha) in
              enumerate(val_fg)] if trains_mat else []
    val = {"seg": val_seg[:keep], "matting": (val_natural + val_fg)[:keep]}
    readers.check_pairs(seg_pairs + val["seg"], workers=args.workers)
    if trains_seg:
        seg = data.SegmentationDataset(seg_pairs, image_size, augment=True, seed=args.seed)
    if trains_mat:
        if not (fg_pairs or natural or d646):
            raise TrainingError(
                "--matting is required for matting training: the folder holding Combined_Dataset "
                "(Adobe Image Matting, from its authors), or mattes in --data DIR/{im,alpha} or "
                "DIR/{fg,alpha}; or use --tasks seg"
            )
        readers.check_pairs([p[:2] for p in fg_pairs + d646 + val["matting"]] + natural,
                         matting=True, workers=args.workers)
        # every background decoded now, not at the step that first draws it (the segmentation
        # images, the default, were just checked)
        drawn = (backgrounds if args.backgrounds and (fg_pairs or val_fg) else []) + [
            b for p in d646 for b in p[2]]
        readers.check_backgrounds(drawn, workers=args.workers)
        mat = data.MattingDataset(fg_pairs + d646, natural, backgrounds, image_size, augment=True,
                                  seed=args.seed)
    # the files a position in the streams refers to (validation items only observe)
    files = [f for pair in seg_pairs for f in pair] if seg is not None else []
    if mat is not None:
        files += [f for p in fg_pairs + d646 + natural for f in p[:2]] + list(backgrounds)
        files += [b for p in d646 for b in p[2]]
    return seg, mat, val, files


# ----------------------------------------------------------------------------------------------
# One training step: both tasks in one forward (so DDP sees one forward per backward)
# ----------------------------------------------------------------------------------------------

PROMPT_KINDS = ("box", "points", "mask")  # HQ-SAM: one of GT box, 10 positive points, noisy GT mask


def prompts(batch: dict, kind: str) -> dict:
    if kind == "box":
        return {"boxes": batch["box"]}
    if kind == "points":
        return {"points": batch["points"], "point_labels": batch["point_labels"]}
    return {"mask_inputs": batch["mask_input"]}


class SamaLoss(nn.Module):
    """L = L_seg + L_matting on one segmentation batch and one matting batch, each through
    SAMA.forward with its own head (plain SAM's decoder, which no loss reads, left out)."""

    def __init__(self, model: SAMA) -> None:
        super().__init__()
        self.model = model

    def forward(self, seg_batch, mat_batch, kind: str) -> tuple[torch.Tensor, dict]:
        total, terms = 0.0, {}
        if seg_batch is not None:
            out = self.model(seg_batch["image"], seg_batch["image_local"],
                             **prompts(seg_batch, kind), tasks=("seg",), with_sam=False)
            logits = F.interpolate(out["seg_logits"].float(), seg_batch["target"].shape[-2:],
                                   mode="bilinear")
            l_seg, t = losses.seg_loss(logits, seg_batch["target"], seg_batch["valid"])
            terms.update(seg=l_seg, **{f"seg_{k}": v for k, v in t.items()})
            total = total + l_seg
        if mat_batch is not None:
            out = self.model(mat_batch["image"], mat_batch["image_local"],
                             **prompts(mat_batch, kind), tasks=("matting",), with_sam=False)
            alpha = F.interpolate(out["alpha"].float(), mat_batch["target"].shape[-2:],
                                  mode="bilinear")
            l_mat, t = losses.matting_loss(alpha, mat_batch["target"], mat_batch["valid"])
            terms.update(matting=l_mat, **{f"matting_{k}": v for k, v in t.items()})
            # L = L_seg + L_matting
            total = total + l_mat
        return total, terms


def get_lr(step: int, total_steps: int, args) -> float:
    """Linear warm-up, then HQ-SAM's step schedule: x0.1 for the last 2 of 12 epochs."""
    warmup = min(1.0, (step + 1) / max(args.warmup_steps, 1))
    decay = 0.1 if step >= total_steps * 10 / 12 else 1.0
    return args.lr * warmup * decay


# ----------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------


def data_identity(streams: dict, digest: str) -> dict:
    """The sizes a data position means something in (samples per set, processes) and the digest of
    the training files' names and bytes (outputs.files_digest)."""
    return {**{name: {"samples": len(s.dataset), "processes": s.world}
               for name, s in streams.items() if s is not None}, "files": digest}


# what --resume requires to equal the saved run's (each changes the weights or the data position);
# --max-steps / --epochs may grow to extend a run, the observing options may change freely
RESUME_SAME = ("batch_size", "accum_steps", "lr", "warmup_steps", "clip", "seed", "tasks")


def check_same_run(state: dict, args, streams: dict, source: Path, data_digest: str) -> None:
    """--resume continues the saved run only: the same recipe, data sizes, processes and data
    files (names and bytes)."""
    saved = state["args"]
    changed = [f"--{k.replace('_', '-')} {saved.get(k)} (now {getattr(args, k)})"
               for k in RESUME_SAME if saved.get(k) != getattr(args, k)]
    now = data_identity(streams, data_digest)
    for name, sizes in now.items():
        if name == "files":
            continue
        before = state["data"].get(name, sizes)
        for key in ("samples", "processes"):
            if before[key] != sizes[key]:
                changed.append(f"{before[key]} {name} {key} (now {sizes[key]})")
    if state["data"].get("files") != data_digest:
        changed.append("other training files (their names or bytes differ)")
    if changed:
        raise TrainingError(f"{source}: saved with {', '.join(changed)}; resume with the same "
                            f"values, or train into another --out")


def remove_stale_temporaries(out_dir: Path) -> None:
    """Remove the temporary files of saves killed mid-write (only rank 0 writes in OUT)."""
    for path in outputs.remove_stale_temporaries(out_dir):
        print(f"removed {path} (left by an interrupted save)")


def drop_records_after(log_path: Path, step: int) -> None:
    """On --resume: keep the records of steps up to the checkpoint's, which the run logs again
    from there; a line cut short by a kill goes too. Rewritten atomically."""
    if not log_path.is_file():
        return
    lines = log_path.read_text().splitlines()
    kept = []
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("step", 0) <= step:
            kept.append(line)
    if len(kept) == len(lines):
        return
    outputs.write_text("".join(f"{line}\n" for line in kept), log_path)
    print(f"{log_path}: dropped {len(lines) - len(kept)} records logged after step {step}, "
          f"the checkpoint's")


def write_record(bar, log, record: dict) -> None:
    """One log line on the terminal and the same as a JSON line in OUT/log.jsonl (rank 0 only)."""
    if log is None:
        return
    bar.write(
        " ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in record.items())
    )
    log.write(json.dumps(record) + "\n")
    log.flush()


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


# ----------------------------------------------------------------------------------------------
# Validation: DIS-VD with GT-box prompts, scored at the GT's resolution (as evaluate.py does),
# through the heads the run trains: a matting-only run is validated on its alpha
# ----------------------------------------------------------------------------------------------


def validate(model: SAMA, val: dict, tasks: list[str]) -> dict:
    """The held-out masks (DIS-VD, or a folder's share): maxF, MAE, and the mask threshold of the
    highest mIoU (val_threshold, which sama.pt records) with that mIoU; the held-out mattes (a
    folder's share): SAD, MSE on the whole image."""
    was_training = model.training
    record = {}
    try:
        if val["seg"]:
            scores, miou = scoring.validate_segmentation(model, tasks, val["seg"], progress=False)
            threshold = scoring.pick_threshold(miou)
            record = {"val_head": "seg" if "seg" in tasks else "matting",
                      "val_maxF": scores["maxF"], "val_MAE": scores["MAE"],
                      "val_threshold": threshold, "val_mIoU": miou[threshold]}
        if val["matting"]:
            scores = scoring.score_matting(model, tasks, val["matting"], progress=False)
            record.update(val_SAD=scores["SAD"], val_MSE=scores["MSE"])
    except NonFiniteOutput as e:
        raise NonFiniteLoss(f"validation: {e}; stopped before saving") from None
    model.train(was_training)
    return record


# ----------------------------------------------------------------------------------------------
# Set-up: processes, SAM, resuming
# ----------------------------------------------------------------------------------------------


@dataclass
class Processes:
    """This process's place in the run: torchrun sets RANK / WORLD_SIZE / LOCAL_RANK."""

    distributed: bool
    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def master(self) -> bool:  # rank 0 alone writes in --out
        return self.rank == 0


def start_processes() -> Processes:
    distributed = "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1
    if distributed:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return Processes(distributed, rank, world, local_rank, device)


def data_streams(args, procs: Processes) -> tuple[dict, dict, str]:
    """The training streams {"seg", "matting"} (None for a task not trained), the validation items
    and the digest of the training files' names and bytes (what --resume checks)."""
    seg_set, mat_set, val, files = build_datasets(args, SAM_VARIANTS[args.model].image_size)
    streams = {name: BatchStream(ds, args.batch_size, procs.world, procs.rank, args.seed,
                                 args.workers) if ds is not None else None
               for name, ds in (("seg", seg_set), ("matting", mat_set))}
    return streams, val, outputs.files_digest(files)


def build_model(args, out_dir: Path, procs: Processes) -> tuple[Sam, dict, SAMA]:
    """SAM from its file (frozen), what sama.pt records of it, and SAMA on top: SAMA's initial
    weights from the seed alone, however SAM was made or found."""
    sam_path = sam_file(args, out_dir, procs)
    sam = load_sam(sam_path, args.model, device=procs.device)
    sam_id = sam_identity(sam_path, sam.config.name, sam.checkpoint_record.sha256)
    torch.manual_seed(args.seed)
    model = SAMA(sam, use_mvle=not args.no_mvle, use_local_adapter=not args.no_local_adapter,
                 mvle_attention=not args.no_mvle_attention)
    return sam, sam_id, model.to(procs.device)


def sam_file(args, out_dir: Path, procs: Processes) -> Path:
    """An official SAM checkpoint, or (tiny only) a random SAM saved in the official format."""
    if args.sam_checkpoint:
        return Path(args.sam_checkpoint)
    if args.model != "tiny":
        raise TrainingError(
            f"--sam-checkpoint is required for {args.model}: download the official "
            f"sam_{args.model}_*.pth from https://github.com/facebookresearch/segment-anything"
        )
    sam_path = out_dir / "sam_tiny_random.pth"
    if procs.master and not sam_path.exists():
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_save(Sam(SAM_VARIANTS["tiny"]).state_dict(), sam_path)
    if procs.distributed:
        dist.barrier()
    return sam_path


def count_steps(args, dataset, world: int) -> int:
    """--max-steps, or --epochs (default EPOCHS) over the first training set."""
    if args.max_steps is not None:
        return args.max_steps
    steps_per_epoch = len(dataset) // (args.batch_size * world * args.accum_steps)
    return (args.epochs or EPOCHS) * max(steps_per_epoch, 1)


def resume(args, model: SAMA, sam: Sam, sam_id: dict, optimizer, streams: dict, prompt_rng,
           data_digest: str, total_steps: int) -> tuple[int, Optional[float]]:
    """OUT/last.pt into the model, the optimiser, the streams and the random states, after
    checking it continues this run; its step and the mask threshold validation last picked (None:
    none yet, or a state saved before thresholds were picked)."""
    last_pt = Path(args.out) / "last.pt"
    state = read_training_state(last_pt)
    if state["config"] != model.config or state["sam"]["sha256"] != sam_id["sha256"]:
        raise TrainingError(
            f"{last_pt}: saved for {state['config']} on {state['sam']['file']}, "
            f"not {model.config} on {sam_id['file']}"
        )
    check_same_run(state, args, streams, last_pt, data_digest)  # --tasks included
    if state["step"] > total_steps:
        raise TrainingError(f"{last_pt}: at step {state['step']}, past the {total_steps} steps "
                            f"asked (--max-steps / --epochs); nothing done")
    model.load_state_dict(
        {**state["sama"], **{f"sam.{k}": v for k, v in sam.state_dict().items()}}
    )
    optimizer.load_state_dict(state["optimizer"])
    for name, s in streams.items():
        if s is not None:
            s.load_state_dict(state["streams"][name])
    torch.set_rng_state(state["rng"]["torch"])
    prompt_rng.set_state(state["rng"]["prompt"])
    return state["step"], state.get("threshold")


def finish_done_run(out_dir: Path, model: SAMA, sam_id: dict, tasks: list[str],
                    threshold: Optional[float], total_steps: int) -> None:
    """--resume of a finished run (a job started again, or a typo): nothing to train; sama.pt is
    written again only if a kill between the last two saves left it behind last.pt."""
    remove_stale_temporaries(out_dir)
    if holds_weights(out_dir / "sama.pt", sama_tensors(model)):
        done = f"{out_dir / 'sama.pt'} holds its weights already"
    else:
        save_sama(model, out_dir / "sama.pt", sam_id, tasks, threshold)
        done = f"saved its weights to {out_dir / 'sama.pt'} (missing or older)"
    print(f"nothing to train: {out_dir / 'last.pt'} is at step {total_steps} of {total_steps}; "
          f"{done} (raise --max-steps or --epochs to go on)")


# ----------------------------------------------------------------------------------------------
# One optimiser step
# ----------------------------------------------------------------------------------------------


def optimiser_step(loss_fn, optimizer, trainable: list, streams: dict, kind: str, args,
                   procs: Processes, autocast, step: int) -> tuple[dict, torch.Tensor]:
    """accum_steps micro-batches of each task, then one step of Adam; the loss terms (averaged
    over the micro-batches) and the gradient norm. A NaN / inf loss or gradient (Adam would write
    NaN into every weight) stops every process before anything is saved from it."""
    optimizer.zero_grad(set_to_none=True)
    sums = {}
    for _ in range(args.accum_steps):
        seg_batch, mat_batch = (
            {k: v.to(procs.device, non_blocking=True) for k, v in s.next().items()} if s else None
            for s in (streams["seg"], streams["matting"])
        )
        with autocast:
            loss, terms = loss_fn(seg_batch, mat_batch, kind)
        (loss / args.accum_steps).backward()
        for k, v in terms.items():
            sums[k] = sums.get(k, 0.0) + v.detach() / args.accum_steps
    # clipping only scales the gradients
    grad_norm = torch.nn.utils.clip_grad_norm_(trainable, args.clip)
    # every loss term: one device sync per step, not one per term
    stacked = torch.stack(list(sums.values()))
    finite = (torch.isfinite(stacked).all() & torch.isfinite(grad_norm)).float().reshape(1)
    if procs.distributed:
        dist.all_reduce(finite, op=dist.ReduceOp.MIN)
    if finite.item() == 0:
        bad = ", ".join(f"{k} {v.item():.4g}" for k, v in sums.items())
        what = "loss" if not torch.isfinite(stacked).all() else "gradient"
        raise NonFiniteLoss(f"step {step}: {what} is not finite ({bad}, grad_norm "
                            f"{grad_norm.item():.4g}); stopped, the last checkpoint "
                            f"{Path(args.out) / 'last.pt'} is untouched")
    optimizer.step()
    return sums, grad_norm


def global_mean(sums: dict, procs: Processes) -> dict:
    """The loss terms of the global batch, not rank 0's share of it."""
    values = torch.stack(list(sums.values()))
    if procs.distributed:
        dist.all_reduce(values)  # gloo has no AVG
        values /= procs.world
    return dict(zip(sums, values.tolist()))


# ----------------------------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------------------------


def train(args) -> Path:
    check_args(args)
    args.fresh = not args.resume  # --out was empty: what it holds after an interrupt is this run's
    procs = start_processes()
    out_dir = Path(args.out)
    tasks = TASK_CHOICES[args.tasks]  # the heads that learn: validated, and recorded in sama.pt
    torch.manual_seed(args.seed)

    # --- data first: a broken tree stops the run before anything is written
    streams, val, data_digest = data_streams(args, procs)
    # --- SAM, frozen, and SAMA's new modules
    sam, sam_id, model = build_model(args, out_dir, procs)
    total_steps = count_steps(args, (streams["seg"] or streams["matting"]).dataset, procs.world)

    # --- the optimiser over the new modules only (SAM: requires_grad False everywhere); the
    # prompt kind of each step from its own generator, the same on every rank
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=args.lr, weight_decay=0.0)
    prompt_rng = torch.Generator().manual_seed(args.seed)
    step, threshold = 0, None  # the mask threshold: validation's pick, or 0.5 (None) until then
    if args.resume:
        step, threshold = resume(args, model, sam, sam_id, optimizer, streams, prompt_rng,
                                 data_digest, total_steps)
        if step == total_steps:
            if procs.master:
                finish_done_run(out_dir, model, sam_id, tasks, threshold, total_steps)
            return out_dir / "sama.pt"

    model, loss_fn, autocast = prepare(model, args, procs)
    if procs.master:
        open_run_folder(out_dir, args, step, model, sam_id, trainable, total_steps, procs)
    log = open(out_dir / "log.jsonl", "a") if procs.master else None
    bar = tqdm(total=total_steps, initial=step, disable=not procs.master, dynamic_ncols=True)
    model.train()
    t_last, step_last = time.time(), step
    try:
        while step < total_steps:
            lr = get_lr(step, total_steps, args)
            for group in optimizer.param_groups:
                group["lr"] = lr
            kind = PROMPT_KINDS[int(torch.randint(len(PROMPT_KINDS), (1,), generator=prompt_rng))]
            sums, grad_norm = optimiser_step(loss_fn, optimizer, trainable, streams, kind, args,
                                             procs, autocast, step)
            step += 1
            bar.update(1)

            # --- observe, validate, save (rank 0 alone writes)
            last = step == total_steps
            if step % args.log_every == 0 or last:
                dt = (time.time() - t_last) / (step - step_last)
                t_last, step_last = time.time(), step
                write_record(bar, log, {"step": step, "kind": kind, "lr": lr,
                                        "grad_norm": grad_norm.item(), "s_per_step": dt,
                                        "peak_mem_mb": peak_memory_mb(procs.device),
                                        **global_mean(sums, procs)})
            if procs.master and any(val.values()) and (step % args.val_every == 0 or last):
                record = validate(model, val, tasks)
                threshold = record.get("val_threshold", threshold)
                write_record(bar, log, {"step": step, **record})
            if procs.master and (step % args.save_every == 0 or last):
                save_training_state(out_dir / "last.pt", model, run_state(
                    optimizer, step, streams, prompt_rng, sam_id, args, data_digest, threshold))
                save_sama(model, out_dir / "sama.pt", sam_id, tasks, threshold)
    finally:
        bar.close()  # before any error message: "error: ..." then starts a line of its own
        if log is not None:
            log.close()
    if procs.master:
        print(f"saved {out_dir / 'sama.pt'} (weights) and {out_dir / 'last.pt'} (to resume)")
    return out_dir / "sama.pt"


def prepare(model: SAMA, args, procs: Processes) -> tuple[SAMA, nn.Module, object]:
    """The model (SyncBatchNorm when distributed on CUDA), the loss module (under DDP when
    distributed) and the autocast context (bf16 on CUDA); --compile compiles SAM's image encoder
    for one training image's views."""
    if procs.distributed and procs.device.type == "cuda":
        # BatchNorm statistics over the global batch
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    loss_fn = SamaLoss(model)
    if procs.distributed:
        loss_fn = DDP(loss_fn, device_ids=[procs.local_rank] if procs.device.type == "cuda"
                      else None, find_unused_parameters=len(TASK_CHOICES[args.tasks]) == 1)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=procs.device.type == "cuda")
    if args.compile:  # for one training image's views, as SAMA.encode batches them
        model.train()
        with autocast:
            seconds = compile_image_encoder(model.sam, 5 if model.use_mvle else 1)
        if procs.master:
            print(f"--compile: SAM's image encoder compiled in {seconds:.1f} s")
    return model, loss_fn, autocast


def open_run_folder(out_dir: Path, args, step: int, model: SAMA, sam_id: dict, trainable: list,
                    total_steps: int, procs: Processes) -> None:
    """--out made, an interrupted save's leftovers removed, the log cut back to the checkpoint's
    step on --resume; the run's size printed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out_dir)
    if args.resume:
        drop_records_after(out_dir / "log.jsonl", step)
    n_train = sum(p.numel() for p in trainable)
    n_sam = sum(p.numel() for p in model.sam.parameters())
    print(f"SAMA {model.config} on {sam_id['file']}: {n_train:,} trainable parameters "
          f"({n_train / n_sam:.2%} of SAM's {n_sam:,}); "
          f"{total_steps} steps of {args.batch_size} x {procs.world} x {args.accum_steps} per "
          f"task; device {procs.device}")


def run_state(optimizer, step: int, streams: dict, prompt_rng, sam_id: dict, args,
              data_digest: str, threshold: Optional[float]) -> dict:
    """What last.pt holds besides SAMA's tensors (load_sam_weights.save_training_state)."""
    return {"sam": sam_id, "optimizer": optimizer.state_dict(), "step": step,
            "threshold": threshold,
            "streams": {name: s.state_dict() for name, s in streams.items() if s is not None},
            "data": data_identity(streams, data_digest),
            "rng": {"torch": torch.get_rng_state(), "prompt": prompt_rng.get_state()},
            "args": dict(vars(args))}


def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.out)

    def interrupted() -> str:
        if (out / "last.pt").is_file():
            return outputs.INTERRUPTED
        return "interrupted before the first checkpoint; nothing kept"

    return outputs.run_main(lambda: train_holding_out(args, out),
                            {NonFiniteLoss: 3, TrainingError: 2, CheckpointError: 2,
                             readers.DataError: 2, outputs.WriteError: 2}, interrupted)


def train_holding_out(args, out: Path) -> int:
    """train(args) with --out held: rank 0 holds it for the whole run; the others write nothing
    there."""
    with outputs.claim(out) if int(os.environ.get("RANK", 0)) == 0 else nullcontext():
        try:
            train(args)
        except KeyboardInterrupt:  # before the first save, a fresh run's files say nothing
            if getattr(args, "fresh", False) and not (out / "last.pt").is_file():
                for name in ("log.jsonl", "sam_tiny_random.pth"):
                    (out / name).unlink(missing_ok=True)
            raise
        finally:
            if dist.is_initialized():  # every way out of a distributed run, in one place
                dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
