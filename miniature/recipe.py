"""The miniature (DESIGN.md, "The miniature"): the shipped stand-in SAM, the study's training
recipe, and the train.py / evaluate.py command lines of one run, which ablate.py and demo.py run
as child processes (a command-line module runs another, never imports it).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Optional

from load_sam_weights import STANDIN_SAM
from sam import SAM_VARIANTS

REPO = Path(__file__).resolve().parents[1]  # the repository's root
STANDIN_FRAME = SAM_VARIANTS["tiny"].image_size  # the stand-in's frame, 256 px

# train.py's options for every run of the study; the lr chosen on the validation splits (DESIGN.md)
RECIPE = {"steps": 1200, "lr": 3e-3, "warmup_steps": 100, "batch_size": 4}
# the shipped SAMA (weights/sama_standin.pt): the study's full model and recipe with seed 0, trained
# 5x as long, to where its validation stopped rising (miniature/ablation/README.md, "The shipped
# SAMA")
SHIPPED_RECIPE = {**RECIPE, "steps": 6000}


class CommandError(Exception):
    """A child command exited with an error; the message is one line."""


def train_command(bench: Path, out: Path, seed: int, recipe: dict, val_every: int,
                  val_images: int = 0, options: tuple = ()) -> list[str]:
    """train.py on the stand-in SAM and the synthetic benchmark in `bench`, with `recipe`'s steps,
    learning rate, warm-up and batch; `options` switch modules or tasks off (ablate.py)."""
    steps = recipe["steps"]
    return [sys.executable, "train.py", "--model", "tiny", "--sam-checkpoint", str(STANDIN_SAM),
            "--data", str(bench / "DIS5K"), "--matting", str(bench / "AIM"),
            "--backgrounds", str(bench / "backgrounds"), "--out", str(out), "--seed", str(seed),
            "--max-steps", str(steps), "--lr", str(recipe["lr"]),
            "--warmup-steps", str(min(recipe["warmup_steps"], steps)),
            "--batch-size", str(recipe["batch_size"]), "--workers", "0", "--log-every", "50",
            "--val-every", str(val_every), "--val-images", str(val_images),
            "--save-every", str(steps), *options]


def evaluate_command(split: str, option: str, folder: Path, model: list, out: Path,
                     limit: int = 0) -> list[str]:
    """evaluate.py on one test split with the stand-in SAM (`model`: ["--model", "sam"] or
    ["--checkpoint", SAMA.pt]); `limit` images (0: all)."""
    return [sys.executable, "evaluate.py", "--split", split, option, str(folder), *model,
            "--sam-checkpoint", str(STANDIN_SAM), "--out", str(out), "--no-progress",
            *(["--limit", str(limit)] if limit else [])]


# ----------------------------------------------------------------------------------------------
# Child processes that end with their parent
# ----------------------------------------------------------------------------------------------

RUNNING: set = set()  # the child processes running now, ended with the parent


def dies_with_parent(parent: int):
    """For Popen's preexec_fn: the child gets SIGTERM when the thread that started it ends, kill -9
    of the parent included (Linux's PR_SET_PDEATHSIG; elsewhere the parent's own interrupt handler
    alone ends its children)."""
    def arm() -> None:
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            return
        if os.getppid() != parent:  # the parent died before the line above
            os.kill(os.getpid(), signal.SIGTERM)
    return arm


def run_command(command: list, log: Optional[Path] = None, threads: Optional[int] = None) -> None:
    """A train.py / evaluate.py process in the repository, with `threads` threads (None: torch's
    default); its output goes to `log` (None: this process's terminal)."""
    env = dict(os.environ)
    if threads is not None:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    with open(log, "a") if log is not None else contextlib.nullcontext() as f:
        if f is not None:
            f.write(" ".join(command) + "\n")
            f.flush()
        child = subprocess.Popen(command, cwd=REPO, env=env, stdout=f,
                                 stderr=subprocess.STDOUT if f is not None else None,
                                 preexec_fn=dies_with_parent(os.getpid()))
        RUNNING.add(child)
        try:
            code = child.wait()
        except BaseException:  # an interrupt of this process: the child ends with it, now
            child.terminate()
            child.wait()
            raise
        finally:
            RUNNING.discard(child)
    if code != 0:
        where = f"; see {log}" if log is not None else " (its error is above)"
        raise CommandError(f"{' '.join(command[1:3])} ... exited with {code}{where}")
