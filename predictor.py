"""The predictor contract, for predict.py, app.py, the demo, evaluation and training's validation:
one predictor for SAMA and plain SAM. Also the one process-wide setting the command lines make
for the CPU (keep_freed_cpu_memory). What a prediction becomes (the mask, the alpha and the RGBA
cutout) is frame.output_images, written as PNGs, all or none, by outputs.save_pngs.

The contract (DESIGN.md, "One predictor contract"), which sama_onnx.OnnxPredictor keeps too:
`set_image(image)`, an (H, W, 3) uint8 RGB array, then `predict(points=None, labels=None,
box=None)` in the image's pixels -> a dict of numpy maps at the image's size: "seg" float32 in
[0, 1] (the probability map), "mask" bool, "alpha" float32 in [0, 1], "sam" bool (plain SAM's
mask); (H, W) for one object, (B, H, W) for B boxes (B, 4) or point sets (B, N, 2) in one call
(DESIGN.md, "Many prompts in one call"). Its inputs are checked in frame.py (check_image,
check_prompt_batch: one line, a ValueError, naming the bad object), its outputs refused when they
hold NaN or inf (frame.NonFiniteOutput).
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Sequence
from typing import Optional, Union

import numpy as np
import torch

# the contract's checks, in frame.py: torch-free, for the ONNX predictor too
from frame import BATCH_BYTES, check_finite, check_image, check_prompt_batch, predict_in_passes
from frame import batch_size_for as frame_batch_size
from load_sam_weights import DEFAULT_THRESHOLD, load_sama
from sam import Sam, SamPredictor, prompt_tensors
from sama import SAMA, TASKS, SamaPredictor

# ----------------------------------------------------------------------------------------------
# One predictor for SAMA and plain SAM
# ----------------------------------------------------------------------------------------------


class Predictor:
    """SAMA (SamaPredictor) or plain SAM (SamPredictor, single-mask output) behind one call.

    predict() returns maps at the image's size, the same kinds for both models (like for like):
    "seg" float32 in [0, 1], the probability map (SAMA: sigmoid(seg logits); SAM: sigmoid of its
    mask logits, up-sampled as SamPredictor up-samples them); "mask" bool, the binary mask (SAMA:
    seg > `threshold`, the one its checkpoint records, read_sama_checkpoint; SAM: logits > 0, as
    SamPredictor thresholds); "alpha" float32 in [0, 1] (SAM: its binary mask); "sam" bool (SAM's
    mask). It raises NonFiniteOutput if the logits or the alpha hold NaN or inf. The maps are
    computed in torch and come to numpy once, at the end.

    A SAMA model is always read through the heads it trained (`tasks`, as its checkpoint records
    them): trained for matting only, its alpha is also the segmentation probability map; trained for
    segmentation only, its probability sigmoid(seg logits) is also the alpha. The untrained head's
    output is never returned. A model from load_sama records both (model.checkpoint_record), and
    they are read from there unless given; a SAMA made in memory needs its tasks given, so that no
    head is ever scored by default. Predictor.from_checkpoint is the one call from a file.
    """

    def __init__(self, model: Union[SAMA, Sam], tasks: Optional[Sequence[str]] = None,
                 threshold: Optional[float] = None) -> None:
        self.is_sama = isinstance(model, SAMA)
        record = model.checkpoint_record
        if self.is_sama and tasks is None and record is not None:
            tasks = record.tasks
        if threshold is None:
            threshold = record.threshold if self.is_sama and record else DEFAULT_THRESHOLD
        if self.is_sama and (not tasks or not set(tasks) <= set(TASKS)):
            raise ValueError(f"Predictor(SAMA) needs the tasks its heads were trained for, a "
                             f"non-empty subset of {TASKS}; got {tasks!r}")
        self.model = model
        self.threshold = threshold
        self.tasks = tuple(t for t in TASKS if t in tasks) if self.is_sama else ()
        self.predictor = SamaPredictor(model) if self.is_sama else SamPredictor(model.eval())
        self.sam = model.sam if self.is_sama else model
        self.size: tuple[Optional[int], Optional[int]] = (None, None)  # (H, W) once set_image ran
        self.batch_size = batch_size_for(model)  # prompts in one pass of the decoders

    @classmethod
    def from_checkpoint(cls, checkpoint, sam_checkpoint=None, device="cpu") -> Predictor:
        """A ready predictor from a SAMA checkpoint (load_sama: checked strictly, one line,
        CheckpointError): its trained heads, the mask at the threshold it records."""
        return cls(load_sama(checkpoint, sam_checkpoint, device=device))

    def set_image(self, image: np.ndarray) -> None:
        """image: (H, W, 3) uint8 RGB; anything else -> ValueError, one line."""
        check_image(image)
        self.predictor.set_image(image)
        self.size = image.shape[:2]

    @torch.no_grad()
    def predict(self, points=None, labels=None, box=None,
                batch_size: Optional[int] = None) -> dict[str, np.ndarray]:
        """One object: points (N, 2) xy with labels (N,) of 1 (foreground) or 0 (background)
        and / or a box (4,) xyxy -> maps (H, W), as before batching came. Many objects in one
        call: boxes (B, 4) and / or points (B, N, 2) with labels (B, N), the i-th box with the
        i-th point set -> maps (B, H, W) in the order given (B = 1 too: a batch of one; B = 0:
        empty maps, nothing run). Pixels of the image, the points inside it (0 <= x <= W,
        0 <= y <= H), the box's corners in order and some of it inside (a box partly outside is
        clipped to the image, with a warning), as the command line checks them; anything else ->
        PromptError (a ValueError), one line, naming the object ("object 2 of 5: box ...").

        The image's features are those set_image computed; the decoders run once per task over
        the batch, in passes of at most `batch_size` prompts (default: self.batch_size, from the
        estimated memory, batch_size_for). Each object's maps equal those of its own call: the
        probabilities and alphas within float rounding, the masks identical (tests/test_batch.py).
        """
        objects, batched = check_prompt_batch(points, labels, box, *self.size)
        return predict_in_passes(objects, batched, batch_size or self.batch_size,
                                 self.predict_objects, self.size)

    def predict_objects(self, objects: list[tuple]) -> dict[str, np.ndarray]:
        """Checked objects [(points, labels, box)] -> maps (B, H, W): the prompts stacked in frame
        pixels, the decoders once over them."""
        # each object's prompt in frame pixels, as its own call makes it, then stacked
        rows = [prompt_tensors(*obj, self.size, self.sam.config.image_size, self.sam.device)
                for obj in objects]
        prompts = [None if row[0] is None else torch.cat(row) for row in zip(*rows)]
        if self.is_sama:
            maps = self.predictor.predict_torch(*prompts)  # seg_logits, alpha, sam_logits
            maps["seg"] = torch.sigmoid(maps["seg_logits"])  # the probability map the field scores
        else:
            masks, _, _ = self.predictor.predict_torch(*prompts, multimask_output=False,
                                                       return_logits=True)
            maps = {"sam_logits": masks[:, 0], "seg": torch.sigmoid(masks[:, 0])}
        maps = {name: m.cpu().numpy() for name, m in maps.items()}  # to numpy, once
        named = {"seg_logits": "segmentation logits", "alpha": "alpha", "sam_logits": "SAM logits"}
        check_finite({named[name]: maps[name] for name in named if name in maps})
        sam = maps["sam_logits"] > self.sam.mask_threshold  # as SamPredictor thresholds
        if not self.is_sama:
            return {"seg": maps["seg"], "mask": sam, "alpha": sam.astype(np.float32), "sam": sam}
        seg, alpha = maps["seg"], maps["alpha"]
        if "seg" not in self.tasks:  # matting only: the alpha as the segmentation probability map
            seg = alpha
        if "matting" not in self.tasks:  # segmentation only: the probability as the alpha
            alpha = seg
        return {"seg": seg, "mask": seg > self.threshold, "alpha": alpha, "sam": sam}


def batch_size_for(model: Union[SAMA, Sam], budget: int = BATCH_BYTES) -> int:
    """The most prompts one pass of the model's decoders takes (frame.batch_size_for): SAMA's
    two tasks' passes (one at a time) beside SAM's pass, or SAM's pass alone."""
    sam = model.sam if isinstance(model, SAMA) else model
    cfg = sam.config
    tasks = len(TASKS) if isinstance(model, SAMA) else 0  # SamaPredictor runs both heads
    return frame_batch_size(cfg.grid_size, cfg.prompt_embed_dim, cfg.image_size, tasks, budget)


# ----------------------------------------------------------------------------------------------
# Host memory on the CPU: the command-line tools call this once (importing a module never does)
# ----------------------------------------------------------------------------------------------


def keep_freed_cpu_memory() -> None:
    """On glibc, let freed tensor memory stay in the process for the next tensor, instead of
    returning every block over 32 MB to the kernel, which must then zero fresh pages for the next
    one.

    On the CPU the five-view encoder batch allocates many such blocks, and faulting in their fresh
    pages costs time (BENCHMARKS.md: `python -m benchmarks.benchmark --optimisations` times SAMA
    with and without this call, in fresh processes). Without the call is the textbook form: the
    process as it starts. The process keeps its peak memory. Elsewhere (macOS, Windows, musl) this
    does nothing.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # mallopt's parameter numbers (malloc.h)
    libc.mallopt(M_MMAP_MAX, 0)  # serve every block from the heap, where free() keeps it
    libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1)  # and never give the heap's free top back
