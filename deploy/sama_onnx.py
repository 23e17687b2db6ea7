"""SAMA on onnxruntime, numpy and pillow alone: the two graphs export_onnx.py writes, behind the
predictor contract of predictor.Predictor (the same checks of its inputs, frame.py's, and the
same maps). Importing this module never imports torch (tests/test_onnx.py).

    predictor = OnnxPredictor("onnx/sama_vit_b")
    predictor.set_image(image)                       # (H, W, 3) uint8 RGB: the image path, once
    maps = predictor.predict(box=np.array([40, 30, 420, 380]))   # the prompt path, per prompt
    many = predictor.predict(box=np.array([[40, 30, 420, 380], [5, 5, 90, 80]]))  # (2, H, W) maps

The folder's sama_onnx.json names the variant, the trained tasks, the frame size, the opset and the
SHA-256 of every file; a file that is not the one the export wrote (truncated, or another export's)
is refused with one line (OnnxError) before any work. The caller's side of the graphs
(onnx_graphs.py) runs here in numpy (frame.py): the frame, the prompt in frame pixels, the maps at
the image's size.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Optional, Union

import numpy as np

from frame import (
    batch_size_for,
    check_finite,
    check_image,
    check_prompt_batch,
    frame_array,
    postprocess_maps,
    predict_in_passes,
    preprocess_shape,
    scale_coords,
)
from outputs import sha256_file

MANIFEST = "sama_onnx.json"  # beside the graphs
FORMAT = "sama-onnx"
TASKS = ("seg", "matting")  # sama.TASKS (tests/test_onnx.py), copied: sama.py imports torch


class OnnxError(ValueError):
    """An export folder that cannot be used (missing, altered, another format); one line."""


def read_manifest(folder: Union[str, Path], int8: bool = False) -> dict:
    """The folder's sama_onnx.json, every graph and data file checked against its SHA-256: the
    float32 graphs ("graphs"), or with int8 the quantized ones ("graphs_int8", export_onnx.py
    --quantize), returned under "graphs"."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise OnnxError(f"{folder}: no {MANIFEST} there (not a folder written by export_onnx.py)")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise OnnxError(f"{path}: unreadable ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise OnnxError(f"{path}: not a SAMA ONNX manifest (no 'format': '{FORMAT}' entry)")
    graphs = "graphs_int8" if int8 else "graphs"
    if int8 and "graphs" in manifest and graphs not in manifest:
        raise OnnxError(f"{path}: no int8 graphs in this export (export_onnx.py --quantize)")
    missing = [key for key in ("tasks", "threshold", "image_size", "inputs", "outputs", graphs)
               if key not in manifest]
    missing += [f"{graphs}.{name}.{key}" for name in ("image", "prompt")
                for key in ("file", "sha256", "data", "data_sha256")
                if key not in manifest.get(graphs, {}).get(name, {})]
    if missing:
        raise OnnxError(f"{path}: an incomplete manifest (no {', '.join(missing)})")
    tasks = manifest["tasks"]
    if not isinstance(tasks, list) or not tasks or not set(tasks) <= set(TASKS):
        raise OnnxError(f"{path}: trained tasks {tasks!r}: not a non-empty list of "
                        f"{' / '.join(TASKS)}")
    threshold = manifest["threshold"]
    if not isinstance(threshold, (int, float)) or not 0 < threshold < 1:
        raise OnnxError(f"{path}: threshold {threshold!r}: not a number between 0 and 1")
    for name in ("image", "prompt"):
        entry = manifest[graphs][name]
        for file_key, hash_key in (("file", "sha256"), ("data", "data_sha256")):
            file = folder / str(entry[file_key])
            if not file.is_file():
                raise OnnxError(f"{file}: missing (the {name} path of {folder})")
            found = sha256_file(file)
            if found != entry.get(hash_key):
                raise OnnxError(f"{file}: not the file this export wrote (sha256 {found[:12]}..., "
                                f"{MANIFEST} says {str(entry.get(hash_key))[:12]}...): truncated "
                                f"or another export's; export again")
    return {**manifest, "graphs": manifest[graphs]}


def onnxruntime_sessions(folder: Path, manifest: dict, providers: Optional[Sequence[str]],
                         threads: Optional[int], profile_prefix: Optional[str] = None) -> dict:
    """{"image": session, "prompt": session}; onnxruntime imported here, only when used.
    profile_prefix: each session records onnxruntime's per-operator profile, a JSON file named
    from it, written by session.end_profiling() (benchmark.py --profile)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise OnnxError("onnxruntime is not installed (pip install -r requirements-onnx.txt)") \
            from None
    providers = list(providers or ["CPUExecutionProvider"])
    sessions = {}
    for name in ("image", "prompt"):
        options = ort.SessionOptions()
        # a predictor waits for its user between prompts: its threads sleep there, not spin-wait
        # on the cores (onnxruntime's default, which slows whatever else runs: PyTorch in
        # benchmark.py)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            options.intra_op_num_threads = threads
        if profile_prefix:
            options.enable_profiling = True
            options.profile_file_prefix = f"{profile_prefix}_{name}"
        if name == "image":
            # every tensor its own block from the arena, freed after its last reader: onnxruntime's
            # reuse plan gives a tensor's block to later tensors of its size and holds it until
            # the last of them, so the image path held most of the encoder's blocks at once
            # (its peak, and the arena's shrinkage after each image, image_run_options:
            # BENCHMARKS.md, "The image path's memory")
            options.enable_mem_reuse = False
        else:  # memory from malloc: the arena grows by powers of two and keeps its peak
            options.enable_cpu_mem_arena = False
        file = folder / manifest["graphs"][name]["file"]
        try:
            sessions[name] = ort.InferenceSession(str(file), options, providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types, one per failure
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise OnnxError(f"{file}: onnxruntime cannot load it ({first})") from None
        found = [i.name for i in sessions[name].get_inputs()]
        if found != manifest["inputs"][name]:
            raise OnnxError(f"{file}: inputs {found}, {MANIFEST} says {manifest['inputs'][name]}")
    return sessions


def image_run_options():
    """onnxruntime's RunOptions for the image path: the CPU arena's free blocks handed back after
    each image (without it, the arena split anew by the next image grew by another power of two:
    BENCHMARKS.md)."""
    import onnxruntime as ort  # imported by onnxruntime_sessions already

    options = ort.RunOptions()
    options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
    return options


class OnnxPredictor:
    """The predictor contract (predictor.Predictor's) on an export folder: set_image(image), then
    predict(points, labels, box) -> {"seg", "mask", "alpha", "sam"} at the image's size (the mask
    at the checkpoint's threshold, recorded in the manifest), read through the trained heads only
    (a single-task model gives both maps from its head), NonFiniteOutput on NaN or inf; a bad
    image or prompt -> ValueError (frame.PromptError for the prompt), one line.

    providers: onnxruntime's execution providers (default: the CPU; ["CUDAExecutionProvider",
    "CPUExecutionProvider"] with onnxruntime-gpu); threads: intra-op threads (default:
    onnxruntime's); int8: the dynamically quantized graphs (export_onnx.py --quantize).
    """

    def __init__(self, folder: Union[str, Path], providers: Optional[Sequence[str]] = None,
                 threads: Optional[int] = None, int8: bool = False) -> None:
        self.folder = Path(folder)
        self.manifest = read_manifest(self.folder, int8)
        self.tasks = tuple(t for t in TASKS if t in self.manifest["tasks"])
        self.image_size = int(self.manifest["image_size"])
        self.sessions = onnxruntime_sessions(self.folder, self.manifest, providers, threads)
        self.image_run = image_run_options()
        self.features: Optional[dict[str, np.ndarray]] = None
        self.original_size: tuple[Optional[int], Optional[int]] = (None, None)

    def set_image(self, image: np.ndarray) -> None:
        """image: (H, W, 3) uint8 RGB -> the image path's outputs, kept for every prompt."""
        check_image(image)
        S = self.image_size
        names = self.manifest["inputs"]["image"]  # ["frame"] or, with MVLE, ["frame", "frame_2s"]
        sizes = {"frame": S, "frame_2s": 2 * S}
        frames = {name: frame_array(image, sizes[name])[None] for name in names}
        outputs = self.sessions["image"].run(None, frames, self.image_run)
        self.features = dict(zip(self.manifest["outputs"]["image"], outputs))
        _, C, G, _ = self.features["F_I"].shape  # prompts in one run of the prompt graph
        self.batch_size = batch_size_for(G, C, S, len(self.tasks))
        self.original_size = image.shape[:2]
        self.input_size = preprocess_shape(image.shape[0], image.shape[1], S)

    def prompt_inputs(self, points=None, labels=None, box=None) -> tuple[np.ndarray, np.ndarray]:
        """The prompt as the graph reads it (SAM's prompt encoder's rule): the points, one "not a
        point" (label -1) when there is no box, the box's corners (labels 2 and 3); frame pixels.
        The prompt as predict checks it. Returns point_coords (1, N, 2) float32 and point_labels
        (1, N) int64."""
        coords, kinds = [np.zeros((0, 2))], [np.zeros(0, dtype=np.int64)]
        if points is not None:
            coords.append(np.asarray(points, dtype=np.float64).reshape(-1, 2))
            kinds.append(np.asarray(labels).reshape(-1).astype(np.int64))
            if box is None:
                coords.append(np.zeros((1, 2)))
                kinds.append(np.array([-1]))
        if box is not None:
            coords.append(np.asarray(box, dtype=np.float64).reshape(2, 2))
            kinds.append(np.array([2, 3]))
        coords = scale_coords(np.concatenate(coords), self.original_size, self.image_size)
        return coords[None].astype(np.float32), np.concatenate(kinds)[None]

    def predict(self, points=None, labels=None, box=None,
                batch_size: Optional[int] = None) -> dict[str, np.ndarray]:
        """The prompt in the image's pixels, checked as predictor.Predictor checks it: one object
        (a box (4,), points (N, 2)) -> (H, W) maps; B objects (boxes (B, 4), points (B, N, 2))
        -> (B, H, W) maps, the prompt graph run once over them, in runs of at most batch_size
        (default: frame.batch_size_for, from the estimated memory), as Predictor.predict."""
        objects, batched = check_prompt_batch(points, labels, box, *self.original_size)
        return predict_in_passes(objects, batched, batch_size or self.batch_size,
                                 self.predict_objects, self.original_size)

    def predict_objects(self, objects: list[tuple]) -> dict[str, np.ndarray]:
        """Checked objects [(points, labels, box)] -> maps (B, H, W): their prompts stacked (each
        as its own call makes it; the objects of one call have the same kinds of prompt, so the
        same number of tokens), the prompt graph once over them."""
        point_coords, point_labels = (np.concatenate(rows) for rows in
                                      zip(*(self.prompt_inputs(*obj) for obj in objects)))
        outputs = self.sessions["prompt"].run(
            None, {**self.features, "point_coords": point_coords, "point_labels": point_labels})
        out = dict(zip(self.manifest["outputs"]["prompt"], (o[:, 0] for o in outputs)))  # (B, h, w)
        S, size, original = self.image_size, self.input_size, self.original_size
        # the SAMA maps (8G) in one resize, SAM's (4G) in another, as SamaPredictor resizes them
        heads = [n for n in ("seg_logits", "alpha") if n in out]
        maps = dict(zip(heads, postprocess_maps(np.stack([out[n] for n in heads]), S, size,
                                                original)))
        sam_logits = postprocess_maps(out["sam_logits"], S, size, original)
        named = {"seg_logits": "segmentation logits", "alpha": "alpha"}
        check_finite({**{named[n]: m for n, m in maps.items()}, "SAM logits": sam_logits})
        if "alpha" in maps:  # the resize can round one ulp past 1: clipped, as Predictor
            maps["alpha"] = np.clip(maps["alpha"], 0, 1)
        if "seg" in self.tasks:  # the probability map, sigmoid(seg logits), as Predictor's
            with np.errstate(over="ignore"):  # exp(-x) = inf for x < -88: sigmoid 0, as torch's
                seg = 1 / (1 + np.exp(-maps["seg_logits"]))
        else:  # matting only: the alpha as the segmentation probability map
            seg = maps["alpha"]
        alpha = maps["alpha"] if "matting" in self.tasks else seg
        return {"seg": seg.astype(np.float32), "mask": seg > self.manifest["threshold"],
                "alpha": alpha.astype(np.float32), "sam": sam_logits > 0}
