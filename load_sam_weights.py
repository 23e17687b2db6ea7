"""The checkpoint module: every file of weights the project reads or writes, checked strictly,
with one clear line when a file is wrong.

    official SAM checkpoints   load_sam(path) -> sam.Sam
    SAMA checkpoints (sama.pt) save_sama / load_sama(path) -> sama.SAMA that knows its tasks, its
                               threshold and the SAM file it needs (model.checkpoint_record)
    training states (last.pt)  save_training_state / read_training_state, for train.py --resume

    python load_sam_weights.py sam_vit_b_01ec64.pth [--variant vit_b]

prints the variant, the parameter count of each part, and runs one box prompt on a synthetic image.

An official checkpoint is a plain state_dict whose keys are exactly sam.Sam's (image_encoder.*,
prompt_encoder.*, mask_decoder.*). Loading is a key-for-key copy: the variant is told from the
tensor shapes, every key and every shape is checked before load_state_dict, and anything wrong
raises CheckpointError naming the file and the problem. Every file is read once, with
torch.load(weights_only=True), and identified by the SHA-256 of the bytes read.

Files that wrap the state dict (e.g. {"model": state_dict, "optimizer": ...}) are refused with a
hint rather than unwrapped: the official SAM and HQ-SAM releases are plain state dicts, and a
wrapper usually means a training checkpoint whose format belongs to its own loader.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import pickle
import pickletools
import re
import sys
import time
import warnings
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch

from outputs import first_few, run_main, sha256_file, write_bytes
from sam import SAM_VARIANTS, Sam, SamConfig, SamPredictor
from sama import SAMA, TASKS

SAM_PARTS = ("image_encoder", "prompt_encoder", "mask_decoder")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be loaded; the message is one line: '<file>: <problem>'."""


# ----------------------------------------------------------------------------------------------
# Reading a file and checking a state dict (shared by every checkpoint format of the project)
# ----------------------------------------------------------------------------------------------


def read_checkpoint(path: Union[str, os.PathLike]) -> dict:
    """torch.load(weights_only=True) on CPU; any unreadable, truncated, damaged or non-dict file ->
    CheckpointError."""
    return read_checkpoint_and_sha256(path)[0]


def read_checkpoint_and_sha256(path: Union[str, os.PathLike]) -> tuple[dict, str]:
    """(the checkpoint's contents, the SHA-256 of its bytes): the file is read once, and the bytes
    hashed are the bytes loaded (a file replaced between a load and a second read for the hash
    would record one file and load another). A zip checkpoint (torch.save's format) is checked
    against the CRC-32 of every entry first: torch.load does not check them, so a flipped byte
    would load as a changed weight."""
    src = os.fspath(path)
    if not os.path.exists(src):
        raise CheckpointError(f"{src}: no such file")
    if os.path.isdir(src):
        raise CheckpointError(f"{src}: is a directory, not a checkpoint file")
    with open(src, "rb") as f:
        raw = f.read()
    if not raw:
        raise CheckpointError(f"{src}: empty file")
    if looks_like_safetensors(src):
        raise CheckpointError(f"{src}: looks like a safetensors file (a JSON header), not a "
                              "PyTorch checkpoint; convert it with safetensors.torch.load_file, "
                              "then torch.save")
    if raw[:4] == b"PK\x03\x04":
        try:
            damaged = zipfile.ZipFile(io.BytesIO(raw)).testzip()
        except (zipfile.BadZipFile, EOFError, ValueError):
            damaged = None  # torch.load says what is wrong below
        except (zlib.error, NotImplementedError) as e:
            raise CheckpointError(f"{src}: corrupted: {e}") from None
        if damaged is not None:
            raise CheckpointError(f"{src}: corrupted: {damaged} fails its CRC-32 check (a byte "
                                  f"changed since it was saved); not loaded")
    try:
        # torch warns about pickle protocols; the error below says enough
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obj = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch names it "Unsupported global: GLOBAL x.y" (earlier) or "unsupported GLOBAL x.y"
        found = re.search(r"\bGLOBAL ([\w.]+)", str(e))
        calls = found.group(1) if found else pickle_call(raw)
        if calls:
            problem = f"holds Python objects ({calls}), which are never unpickled"
        else:
            problem = "unreadable: not a PyTorch checkpoint, or a corrupted one"
        raise CheckpointError(f"{src}: {problem}") from None
    except EOFError:
        raise CheckpointError(
            f"{src}: truncated: the file ends in the middle of the data"
        ) from None
    except RuntimeError as e:
        if "zip archive" in str(e) or "central directory" in str(e):
            problem = "truncated or corrupted: not a complete PyTorch zip archive"
        else:
            problem = f"unreadable: {str(e).splitlines()[0][:200]}" if str(e) else "unreadable"
        raise CheckpointError(f"{src}: {problem}") from None
    except Exception as e:  # anything else torch.load trips on means the bytes are not a checkpoint
        raise CheckpointError(
            f"{src}: unreadable: not a PyTorch checkpoint ({type(e).__name__})"
        ) from None
    if not isinstance(obj, dict):
        raise CheckpointError(
            f"{src}: not a state dict: the file holds a {type(obj).__name__}, not a dict"
        )
    return obj, hashlib.sha256(raw).hexdigest()


def pickle_call(raw: bytes) -> Optional[str]:
    """The first callable a plain pickle (or a zip checkpoint's data.pkl) would import to rebuild
    its objects (e.g. posix.system), read from its opcodes without unpickling; None if it names
    none or is not a pickle."""
    strings: list[str] = []
    try:
        if raw[:4] == b"PK\x03\x04":
            archive = zipfile.ZipFile(io.BytesIO(raw))
            raw = archive.read(next(n for n in archive.namelist() if n.endswith("/data.pkl")))
        for op, arg, _ in pickletools.genops(raw):
            if op.name == "GLOBAL":
                return str(arg).replace(" ", ".")
            if op.name == "STACK_GLOBAL" and len(strings) >= 2:
                return f"{strings[-2]}.{strings[-1]}"
            if isinstance(arg, str):
                strings.append(arg)
    except Exception:  # not a pickle from its first byte: nothing to name
        return None
    return None


def looks_like_safetensors(path: Union[str, os.PathLike]) -> bool:
    """The safetensors layout: an 8-byte little-endian header length N, then N bytes of JSON
    starting with '{', inside the file. A PyTorch checkpoint starts with "PK" (zip) or 0x80
    (pickle)."""
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) < 9:
        return False
    header_length = int.from_bytes(head[:8], "little")
    return head[8:9] == b"{" and 8 + header_length <= os.path.getsize(path)


def check_float32_and_finite(state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Refuse NaN / inf weights (a diverged run would give NaN outputs, saved as black images);
    say once, on stderr, when floating-point tensors are not float32 (loading converts them)."""
    broken = [k for k, v in state_dict.items()
              if v.is_floating_point() and not torch.isfinite(v).all()]
    if broken:
        tensors = f"{len(broken)} tensor{'s' * (len(broken) > 1)}"
        raise CheckpointError(f"{source}: NaN or inf in {tensors} ({first_few(broken)}): broken "
                              "weights, e.g. from a diverged training run")
    other = sorted({str(v.dtype).removeprefix("torch.") for v in state_dict.values()
                    if v.is_floating_point() and v.dtype != torch.float32})
    if other:
        print(f"warning: {source}: {' and '.join(other)} weights, converted to float32",
              file=sys.stderr)


def check_keys_and_shapes(
    state_dict: Mapping, expected: Mapping[str, torch.Tensor], source: str
) -> None:
    """Key-for-key check of state_dict against a model's state_dict (shapes only; meta tensors are
    fine)."""
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(
                f"{len(missing)} missing key{'s' * (len(missing) > 1)} ({first_few(missing)})"
            )
        if unexpected:
            parts.append(
                f"{len(unexpected)} unexpected key{'s' * (len(unexpected) > 1)} "
                f"({first_few(unexpected)})"
            )
        hint = ""
        if any(
            re.search(r"hf_token|hf_mlp|compress_vit_feat|embedding_encoder", k) for k in unexpected
        ):
            hint = "; this looks like an HQ-SAM checkpoint"
        elif unexpected and not missing:
            hint = "; the file holds more than this model (a SAMA or other extended checkpoint?)"
        elif missing and all(k.startswith("early_up.") for k in missing):
            hint = "; saved by sama.py before F_early reached the heads (early_up): train it again"
        raise CheckpointError(f"{source}: " + " and ".join(parts) + hint)
    bad = [k for k in expected if tuple(state_dict[k].shape) != tuple(expected[k].shape)]
    if bad:
        k = bad[0]
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise CheckpointError(
            f"{source}: shape mismatch at {k}: file {list(state_dict[k].shape)}, model "
            f"{list(expected[k].shape)}{more}"
        )
    wrong_kind = [
        k for k in expected if state_dict[k].is_floating_point() != expected[k].is_floating_point()
    ]
    if wrong_kind:
        k = wrong_kind[0]
        raise CheckpointError(
            f"{source}: {k} has dtype {state_dict[k].dtype}, the model's is {expected[k].dtype}"
        )


# ----------------------------------------------------------------------------------------------
# SAM checkpoints
# ----------------------------------------------------------------------------------------------


def _describe(cfg: SamConfig) -> str:
    G = cfg.grid_size
    return f"pos_embed {G}x{G}x{cfg.encoder_embed_dim}, {cfg.encoder_depth} blocks"


def _check_is_sam_state_dict(state_dict: dict, source: str) -> None:
    """Refuse dicts that are not SAM state dicts with a hint on what they are."""
    if not state_dict:
        raise CheckpointError(f"{source}: not a SAM state dict: the dict is empty")
    if state_dict.get("format") == SAMA_FORMAT:
        raise CheckpointError(
            f"{source}: not a SAM state dict: a SAMA checkpoint (load it with load_sama)"
        )
    others = [
        k for k, v in state_dict.items() if not (isinstance(k, str) and isinstance(v, torch.Tensor))
    ]
    if others:
        names = [str(k) for k in others]
        hint = ""
        for wrapper in ("model", "state_dict"):
            inner = state_dict.get(wrapper)
            if isinstance(inner, dict) and any(str(k).startswith("image_encoder.") for k in inner):
                hint = (f"; the weights are wrapped under {wrapper!r} (a training checkpoint? "
                        f"save that entry alone)")
        raise CheckpointError(
            f"{source}: not a SAM state dict: {len(names)} entries are not tensors "
            f"({first_few(names)}){hint}"
        )
    if not any(k.startswith("image_encoder.") for k in state_dict):
        raise CheckpointError(
            f"{source}: not a SAM state dict: no image_encoder.* keys (first keys: "
            f"{first_few(list(state_dict))})"
        )


def _shape_signature(state_dict: Mapping) -> tuple[Optional[tuple[int, ...]], int]:
    """(pos_embed shape, number of ViT blocks) of a state dict."""
    pe = state_dict.get("image_encoder.pos_embed")
    blocks = {int(k.split(".")[2]) for k in state_dict
              if k.startswith("image_encoder.blocks.") and k.split(".")[2].isdigit()}
    return (tuple(pe.shape) if isinstance(pe, torch.Tensor) else None), (
        max(blocks) + 1 if blocks else 0
    )


def infer_variant(state_dict: Mapping) -> Optional[str]:
    """Name in SAM_VARIANTS whose pos_embed shape and depth match the state dict, or None."""
    pe_shape, depth = _shape_signature(state_dict)
    for name, cfg in SAM_VARIANTS.items():
        G, D = cfg.grid_size, cfg.encoder_embed_dim
        if pe_shape == (1, G, G, D) and depth == cfg.encoder_depth:
            return name
    return None


def check_sam_state_dict(
    state_dict: dict, variant: Union[str, SamConfig, None] = None, source: str = "state dict"
) -> SamConfig:
    """Check a SAM state dict key for key and shape for shape, against a SAM of its configuration
    built on the meta device (nothing allocated); returns the configuration (sam_config).

    (The loaders check against the model they load into instead, load_sam and load_sama: the meta
    device's random initialisation imports torch._dynamo, 1.2 s of every command's start.)
    """
    cfg = sam_config(state_dict, variant, source)
    with torch.device("meta"):
        expected = Sam(cfg).state_dict()
    check_keys_and_shapes(state_dict, expected, source)
    return cfg


def sam_config(
    state_dict: dict, variant: Union[str, SamConfig, None] = None, source: str = "state dict"
) -> SamConfig:
    """A SAM state dict's configuration, from its shapes (no tensor read but their shapes).

    variant: a name in SAM_VARIANTS, a SamConfig (custom sizes), or None to infer it from the
    shapes.
    """
    _check_is_sam_state_dict(state_dict, source)
    found = infer_variant(state_dict)
    if isinstance(variant, SamConfig):
        cfg = variant
    elif variant is not None:
        if variant not in SAM_VARIANTS:
            raise CheckpointError(
                f"{source}: unknown variant {variant!r} (known: {', '.join(SAM_VARIANTS)})"
            )
        cfg = SAM_VARIANTS[variant]
        if found is not None and found != variant:
            raise CheckpointError(
                f"{source}: wrong variant: asked for {variant} ({_describe(cfg)}) but the file "
                f"holds {found} ({_describe(SAM_VARIANTS[found])})"
            )
    elif found is None:
        pe_shape, depth = _shape_signature(state_dict)
        pe = "no image_encoder.pos_embed" if pe_shape is None else f"pos_embed {list(pe_shape)}"
        known = "; ".join(f"{n}: {_describe(c)}" for n, c in SAM_VARIANTS.items())
        raise CheckpointError(
            f"{source}: cannot tell the SAM variant from {pe} and {depth} blocks (known: {known})"
        )
    else:
        cfg = SAM_VARIANTS[found]
    return cfg


def load_sam(
    checkpoint: Union[str, os.PathLike], variant: Union[str, SamConfig, None] = None, device="cpu"
) -> Sam:
    """Official SAM checkpoint -> sam.Sam in eval mode on `device`.

    variant: "vit_b" / "vit_l" / "vit_h" / "tiny", a SamConfig, or None to infer it from the shapes.
    Raises CheckpointError (a ValueError) with a one-line message for any file that does not fit,
    NaN / inf weights included; float16 / bfloat16 / float64 weights are converted to float32 with
    one warning line. model.checkpoint_record: the file and the SHA-256 of the bytes loaded.
    """
    state_dict, sha256 = read_checkpoint_and_sha256(checkpoint)
    cfg = sam_config(state_dict, variant, source=os.fspath(checkpoint))
    with torch.device(device):
        model = Sam(cfg)
    # key for key and shape for shape, against the model that loads them
    check_keys_and_shapes(state_dict, model.state_dict(), os.fspath(checkpoint))
    check_float32_and_finite(state_dict, os.fspath(checkpoint))
    model.load_state_dict(state_dict, strict=True)  # cannot fail after the checks above
    model.checkpoint_record = CheckpointRecord(os.path.abspath(checkpoint), sha256)
    return model.eval()


def param_counts(model: torch.nn.Module) -> dict[str, int]:
    """Number of parameters (buffers excluded) per SAM part and in total."""
    counts = {part: sum(p.numel() for p in getattr(model, part).parameters()) for part in SAM_PARTS}
    counts["total"] = sum(p.numel() for p in model.parameters())
    return counts


# ----------------------------------------------------------------------------------------------
# Writing files atomically, and SAMA checkpoints
# ----------------------------------------------------------------------------------------------


def atomic_save(obj, path: Union[str, os.PathLike]) -> None:
    """torch.save, whole or not at all (outputs.write_bytes: a temporary file renamed; a full disk
    is one line, outputs.WriteError, and no leftover). Serialised in memory first, so that a write
    error is the file system's own, not torch's zip writer's ("unexpected pos")."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_bytes(buffer.getbuffer(), path)


def sam_identity(path: Union[str, os.PathLike], variant: str, sha256: Optional[str] = None) -> dict:
    """What a SAMA checkpoint records of the SAM file it was trained on: its name (not its folder:
    load_sama looks beside the SAMA file and in weights/), variant and SHA-256 (give the one of the
    bytes loaded, Sam.checkpoint_record, rather than reading the file again)."""
    return {"file": os.path.basename(os.fspath(path)), "variant": variant,
            "sha256": sha256 or sha256_file(path)}


SAMA_FORMAT = "sama"  # the "format" entry of a SAMA checkpoint ...
TRAINING_STATE_FORMAT = "sama-training-state"  # ... and of a training state
# SAMA's mask: its probability map above this, unless the checkpoint records another threshold
DEFAULT_THRESHOLD = 0.5


@dataclass(frozen=True)
class CheckpointRecord:
    """What load_sam / load_sama read a model from (model.checkpoint_record): the file's absolute
    path and the SHA-256 of the bytes loaded; for a SAMA, also the tasks its heads were trained for,
    the mask threshold its checkpoint records, and the record of its SAM file."""

    file: str
    sha256: str
    tasks: tuple[str, ...] = ()
    threshold: float = DEFAULT_THRESHOLD
    sam: Optional[CheckpointRecord] = None


def check_tasks(tasks, source: str) -> list[str]:
    """The trained heads as a list in TASKS order; anything else -> CheckpointError."""
    listed = isinstance(tasks, (list, tuple)) and all(isinstance(t, str) for t in tasks)
    if not listed or not tasks or len(set(tasks)) != len(tasks) or not set(tasks) <= set(TASKS):
        raise CheckpointError(f"{source}: trained tasks {tasks!r}: not a non-empty list of "
                              f"distinct {' / '.join(TASKS)}")
    return [t for t in TASKS if t in tasks]


def check_threshold(threshold, source: str) -> float:
    """The mask threshold on SAMA's probability map: a number strictly between 0 and 1."""
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not (
            0 < threshold < 1):
        raise CheckpointError(f"{source}: mask threshold {threshold!r}: not a number strictly "
                              f"between 0 and 1")
    return float(threshold)


def sama_tensors(model: SAMA) -> dict[str, torch.Tensor]:
    """SAMA's own tensors (its trainable weights and BatchNorm statistics), on the CPU: SAM's
    weights stay in SAM's file."""
    model = getattr(model, "module", model)
    return {k: v.detach().cpu() for k, v in model.state_dict().items() if not k.startswith("sam.")}


def save_sama(model: SAMA, path: Union[str, os.PathLike], sam_id: dict,
              tasks: Sequence[str], threshold: Optional[float] = None) -> None:
    """Only SAMA's own tensors (trainable weights and BatchNorm statistics), its configuration, the
    tasks it was trained for (the heads that learned: only those may be scored), the identity of
    its SAM checkpoint and, if one was picked, the mask threshold on its probability map; SAM's
    weights stay in SAM's file."""
    tasks = check_tasks(list(tasks), os.fspath(path))
    state = sama_tensors(model)
    picked = {} if threshold is None else {"threshold": check_threshold(threshold, os.fspath(path))}
    atomic_save({"format": SAMA_FORMAT, "config": model.config, "tasks": tasks, "sam": sam_id,
                 **picked, "state_dict": state}, path)


def read_sama_checkpoint(sama_checkpoint: Union[str, os.PathLike]) -> dict:
    """A SAMA checkpoint's contents, checked to be one ('config', 'tasks', 'sam', 'state_dict');
    ckpt["sha256"] is the SHA-256 of the bytes read, ckpt["threshold"] the mask threshold it
    records (DEFAULT_THRESHOLD if none): the one place the threshold is read; load_sama passes it
    on in model.checkpoint_record, and the Predictor masks with it (evaluate.py, predict.py, the web
    page)."""
    source = os.fspath(sama_checkpoint)
    ckpt, sha256 = read_checkpoint_and_sha256(source)
    if ckpt.get("format") != SAMA_FORMAT:
        if any(isinstance(k, str) and k.startswith("image_encoder.") for k in ckpt):
            raise CheckpointError(
                f"{source}: this is a SAM checkpoint, not a SAMA one (pass it as --sam-checkpoint)"
            )
        if ckpt.get("format") == TRAINING_STATE_FORMAT:
            raise CheckpointError(
                f"{source}: a training state (for --resume); the weights are in sama.pt beside it"
            )
        raise CheckpointError(f"{source}: not a SAMA checkpoint (no 'format': 'sama' entry)")
    sam = ckpt.get("sam")
    missing = [k for k in ("config", "sam", "state_dict") if k not in ckpt]
    if missing or not isinstance(sam, dict) or not {"file", "sha256"} <= set(sam):
        raise CheckpointError(
            f"{source}: an incomplete SAMA checkpoint (missing "
            f"{', '.join(missing) or 'sam.file / sam.sha256'})"
        )
    if not (isinstance(sam["file"], str) and isinstance(sam["sha256"], str)
            and re.fullmatch(r"[0-9a-f]{64}", sam["sha256"])):
        raise CheckpointError(f"{source}: its SAM record {sam!r} is not a file name and a SHA-256")
    config = ckpt.get("config")
    if not isinstance(config, dict) or config.get("variant") not in SAM_VARIANTS:
        raise CheckpointError(
            f"{source}: not a SAMA checkpoint: its configuration {config!r} names no SAM variant"
        )
    if not all(isinstance(config.get(k), bool) for k in ("use_mvle", "use_local_adapter")):
        raise CheckpointError(f"{source}: its configuration {config!r} does not say true or "
                              f"false for use_mvle and use_local_adapter")
    # mvle_attention: recorded since the study's second reading of "without MVLE"; before it,
    # MVLE always had its attention
    config.setdefault("mvle_attention", True)
    if not isinstance(config["mvle_attention"], bool):
        raise CheckpointError(f"{source}: its configuration {config!r} does not say true or "
                              f"false for mvle_attention")
    state = ckpt["state_dict"]
    if not isinstance(state, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise CheckpointError(f"{source}: its state_dict is not a dict of named tensors")
    if "tasks" not in ckpt:  # without them an untrained head could be scored as if it had learned
        raise CheckpointError(f"{source}: records no trained tasks (saved by an earlier version), "
                              f"so an untrained head cannot be told apart; train it again")
    ckpt["tasks"] = check_tasks(ckpt["tasks"], source)
    ckpt["threshold"] = check_threshold(ckpt.get("threshold", DEFAULT_THRESHOLD), source)
    ckpt["sha256"] = sha256
    return ckpt


WEIGHTS = Path(__file__).resolve().parent / "weights"  # the shipped files; looked in for SAM files
# the shipped stand-in SAM (miniature/pretrain_sam.py) and the SAMA the study trained on it
STANDIN_SAM, STANDIN_SAMA = WEIGHTS / "sam_standin.pth", WEIGHTS / "sama_standin.pt"


def find_sam_file(source: str, recorded: dict) -> str:
    """The SAM file a SAMA checkpoint names: beside the SAMA file, then in weights/ (an older
    checkpoint's absolute path first). The SHA-256 is checked by the caller."""
    name = os.path.basename(recorded["file"])
    places = [recorded["file"]] if os.path.isabs(recorded["file"]) else []
    places += [os.path.join(os.path.dirname(os.path.abspath(source)), name),
               os.fspath(WEIGHTS / name)]
    found = next((p for p in places if os.path.isfile(p)), None)
    if found is None:
        raise CheckpointError(f"{source}: its SAM checkpoint {name} (sha256 "
                              f"{recorded['sha256'][:12]}...) is neither beside it nor in "
                              f"{WEIGHTS}; pass --sam-checkpoint")
    return found


def load_sama(
    sama_checkpoint: Union[str, os.PathLike],
    sam_checkpoint: Union[str, os.PathLike, None] = None,
    device="cpu",
) -> SAMA:
    """A SAMA checkpoint on top of its SAM checkpoint -> SAMA in eval mode.

    sam_checkpoint defaults to the file the SAMA checkpoint names, looked for beside it and in
    weights/. The tasks it was trained for are model.checkpoint_record.tasks: score it only through
    those heads (predictor.Predictor does). The record also holds both files' paths and the SHA-256
    of the bytes loaded. Refused, with one line: a SAMA file that records no trained
    tasks, a SAM file of another variant or other weights than the ones SAMA was trained on, a SAMA
    file with missing, extra or misshapen tensors, and NaN / inf weights in either file.
    """
    source = os.fspath(sama_checkpoint)
    ckpt = read_sama_checkpoint(source)
    config, recorded = ckpt["config"], ckpt["sam"]
    if sam_checkpoint is not None:
        sam_path = os.fspath(sam_checkpoint)
        if not os.path.exists(sam_path):
            raise CheckpointError(f"{sam_path}: no such file (the SAM checkpoint)")
    else:
        sam_path = find_sam_file(source, recorded)
    sam_state, sam_sha256 = read_checkpoint_and_sha256(sam_path)
    sam_cfg = sam_config(sam_state, None, source=sam_path)
    if sam_cfg.name != config["variant"]:
        raise CheckpointError(
            f"{sam_path}: a {sam_cfg.name} SAM, but {source} was trained on {config['variant']}"
        )
    if sam_sha256 != recorded["sha256"]:
        raise CheckpointError(
            f"{sam_path}: not the SAM weights {source} was trained on "
            f"(sha256 {sam_sha256[:12]}..., expected {recorded['sha256'][:12]}... of "
            f"{recorded['file']})"
        )
    with torch.device(device):
        model = SAMA(Sam(sam_cfg), config["use_mvle"], config["use_local_adapter"],
                     config["mvle_attention"])
    # key for key and shape for shape, against the model that loads them
    check_keys_and_shapes(sam_state, model.sam.state_dict(), sam_path)
    expected = {k: v for k, v in model.state_dict().items() if not k.startswith("sam.")}
    check_keys_and_shapes(ckpt["state_dict"], expected, source)
    check_float32_and_finite(sam_state, sam_path)
    check_float32_and_finite(ckpt["state_dict"], source)
    model.load_state_dict(
        {**ckpt["state_dict"], **{f"sam.{k}": v for k, v in sam_state.items()}}, strict=True
    )
    model.sam.checkpoint_record = CheckpointRecord(os.path.abspath(sam_path), sam_sha256)
    model.checkpoint_record = CheckpointRecord(os.path.abspath(source), ckpt["sha256"],
                                               tuple(ckpt["tasks"]), ckpt["threshold"],
                                               model.sam.checkpoint_record)
    return model.eval()


# ----------------------------------------------------------------------------------------------
# Training states: train.py's OUT/last.pt, everything --resume needs (SAM excluded: it is read
# again from its own file)
# ----------------------------------------------------------------------------------------------

TRAINING_STATE = {"sama": dict, "config": dict, "sam": dict, "optimizer": dict, "step": int,
                  "streams": dict, "data": dict, "rng": dict, "args": dict}


def save_training_state(path: Union[str, os.PathLike], model: SAMA, run: dict) -> None:
    """SAMA's own tensors and configuration, and `run`: the rest of TRAINING_STATE (the optimiser,
    the step, the data streams' positions and identity, the random states, the options), as
    train.py fills it; written atomically."""
    missing = set(TRAINING_STATE) - {"sama", "config"} - set(run)
    if missing:
        raise ValueError(f"a training state needs {', '.join(sorted(missing))}")
    atomic_save({"format": TRAINING_STATE_FORMAT, "sama": sama_tensors(model),
                 "config": model.config, **run}, path)


def read_training_state(path: Union[str, os.PathLike]) -> dict:
    """OUT/last.pt, checked to be a whole training state of this version (one line if not)."""
    state = read_checkpoint(path)
    if state.get("format") != TRAINING_STATE_FORMAT:
        raise CheckpointError(f"{path}: not a SAMA training state")
    wrong = [k for k, kind in TRAINING_STATE.items() if not isinstance(state.get(k), kind)]
    if not wrong and "files" not in state["data"]:
        wrong = ["data.files (saved by an earlier version, without its data's digest)"]
    if not wrong:
        wrong = [k for k in ("sha256", "file") if not isinstance(state["sam"].get(k), str)]
        wrong += [f"rng.{k}" for k in ("torch", "prompt")
                  if not isinstance(state["rng"].get(k), torch.Tensor)]
    if wrong:
        raise CheckpointError(f"{path}: not a whole training state ({', '.join(wrong)} missing or "
                              f"of the wrong kind); train into another --out")
    return state


def holds_weights(sama_path: Union[str, os.PathLike], weights: dict) -> bool:
    """Whether a readable SAMA checkpoint holds exactly these tensors."""
    try:
        saved = read_checkpoint(sama_path).get("state_dict", {})
    except CheckpointError:
        return False
    same_keys = saved.keys() == weights.keys()
    return same_keys and all(torch.equal(saved[k], v) for k, v in weights.items())


# ----------------------------------------------------------------------------------------------
# Command line: check a file and run one prompt on a synthetic image
# ----------------------------------------------------------------------------------------------


def synthetic_image(h: int = 480, w: int = 640) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A shaded orange disc on a blue-green gradient: image (h, w, 3) uint8, disc mask (h, w), box
    xyxy."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    image = np.stack([40 + 60 * x / w, 90 + 100 * y / h, 200 - 80 * x / w], axis=-1)
    cy, cx, r = 0.55 * h, 0.45 * w, 0.25 * min(h, w)
    disc = (x - cx) ** 2 + (y - cy) ** 2 <= r**2
    shade = 1.0 - 0.3 * np.clip(((x - cx) + (y - cy)) / (2 * r), -1, 1)  # lit from the top left
    image[disc] = np.stack([235 * shade, 130 * shade, 40 * shade], axis=-1)[disc]
    box = np.array([cx - r - 8, cy - r - 8, cx + r + 8, cy + r + 8])
    return image.clip(0, 255).astype(np.uint8), disc, box


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="an official SAM checkpoint, e.g. sam_vit_b_01ec64.pth")
    parser.add_argument(
        "--variant", choices=list(SAM_VARIANTS), help="default: told from the tensor shapes"
    )
    args = parser.parse_args(argv)
    return run_main(lambda: check_checkpoint(args.checkpoint, args.variant), {CheckpointError: 2})


def check_checkpoint(checkpoint: str, variant: Optional[str]) -> int:
    """The command's work: load the file, print its variant and parameters, one box prompt."""
    model = load_sam(checkpoint, variant)
    cfg = model.config
    print(f"variant: {cfg.name} ({_describe(cfg)}, {cfg.image_size} px frames)")
    print("parameters: " + ", ".join(f"{part} {n:,}" for part, n in param_counts(model).items()))

    image, disc, box = synthetic_image()
    t0 = time.time()
    predictor = SamPredictor(model)
    predictor.set_image(image)
    masks, scores, _ = predictor.predict(box=box, multimask_output=False)
    mask = masks[0]
    area = int(mask.sum())
    iou_disc = (mask & disc).sum() / max((mask | disc).sum(), 1)
    print(
        f"box prompt {[round(v) for v in box]} on a {image.shape[0]}x{image.shape[1]} synthetic "
        f"disc: mask area {area:,} px ({100 * area / mask.size:.1f}% of the image), predicted IoU "
        f"{scores[0]:.3f}, IoU with the disc {iou_disc:.3f} ({time.time() - t0:.1f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
