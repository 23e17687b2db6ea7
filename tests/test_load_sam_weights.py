"""load_sam: variant inference, parameter counts, one clear line for every kind of wrong file, the
CLI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from load_sam_weights import (
    CheckpointError,
    check_sam_state_dict,
    infer_variant,
    load_sam,
    load_sama,
    looks_like_safetensors,
    main,
    param_counts,
    read_checkpoint,
    read_sama_checkpoint,
    sam_identity,
    save_sama,
)
from sam import SAM_VARIANTS, Sam
from sama import SAMA, TASKS

ROOT = Path(__file__).resolve().parents[1]
TINY = SAM_VARIANTS["tiny"]

# The official models' parameter counts (segment-anything's modeling classes with the sizes of its
# build_sam_vit_b / _l / _h): total / image encoder; the prompt encoder has 6,220 and the mask
# decoder 4,058,340 parameters in every variant.
OFFICIAL_COUNTS = {"vit_b": (93_735_472, 89_670_912), "vit_l": (312_342_832, 308_278_272),
                   "vit_h": (641_090_608, 637_026_048)}
OFFICIAL_KEYS = {"vit_b": 314, "vit_l": 482, "vit_h": 594}

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.torch_threads


def meta_state_dict(variant: str) -> dict:
    with torch.device("meta"):
        return Sam(SAM_VARIANTS[variant]).state_dict()


@pytest.fixture
def tiny_file(official_checkpoint):
    """A tiny checkpoint in the official format (saved from the official modules) and its state
    dict."""
    model, path = official_checkpoint(TINY, seed=3, name="sam_tiny.pth")
    return path, model.state_dict()


def error_of(path, **kwargs) -> str:
    with pytest.raises(CheckpointError) as info:
        load_sam(path, **kwargs)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{path}: "), msg
    assert isinstance(info.value, ValueError)
    return msg


# ----------------------------------------------------------------------------------------------
# Good files, variants, counts
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["vit_b", "vit_l", "vit_h"])
def test_param_counts_on_meta_match_the_official_models(variant):
    with torch.device("meta"):
        model = Sam(SAM_VARIANTS[variant])
    counts = param_counts(model)
    total, encoder = OFFICIAL_COUNTS[variant]
    assert counts == {
        "image_encoder": encoder,
        "prompt_encoder": 6_220,
        "mask_decoder": 4_058_340,
        "total": total,
    }


@pytest.mark.parametrize("variant", ["vit_b", "vit_l", "vit_h", "tiny"])
def test_variant_inferred_from_shapes(variant):
    sd = meta_state_dict(variant)
    if variant in OFFICIAL_KEYS:
        assert len(sd) == OFFICIAL_KEYS[variant]
    assert infer_variant(sd) == variant
    assert check_sam_state_dict(sd).name == variant  # every key and shape checked, on meta tensors


def test_wrong_variant_asked_for_big_ones_on_meta():
    with pytest.raises(CheckpointError, match=r"wrong variant: asked for vit_l .* holds vit_b"):
        check_sam_state_dict(meta_state_dict("vit_b"), "vit_l", source="sam_vit_b.pth")
    with pytest.raises(CheckpointError, match=r"asked for vit_b .* holds vit_h"):
        check_sam_state_dict(meta_state_dict("vit_h"), "vit_b", source="sam_vit_h.pth")


def test_load_good_tiny_checkpoint(tiny_file):
    path, sd = tiny_file
    for variant in (None, "tiny", TINY):
        model = load_sam(path, variant)
        assert model.config == TINY and not model.training
        loaded = model.state_dict()
        assert loaded.keys() == sd.keys()
        assert all(torch.equal(loaded[k], sd[k]) for k in sd)
    assert read_checkpoint(path).keys() == sd.keys()


# ----------------------------------------------------------------------------------------------
# Bad files: one line naming the file and the problem
# ----------------------------------------------------------------------------------------------


def test_not_a_dict(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(3)], path)
    assert "not a state dict" in error_of(path) and "list" in error_of(path)


def test_random_dict(tmp_path):
    path = tmp_path / "random.pth"
    torch.save({"encoder.weight": torch.zeros(3, 3), "head.bias": torch.zeros(3)}, path)
    msg = error_of(path)
    assert "not a SAM state dict" in msg and "no image_encoder" in msg and "encoder.weight" in msg


def test_wrapped_state_dict_is_refused_with_a_hint(tmp_path, tiny_file):
    _, sd = tiny_file
    path = tmp_path / "train.pth"
    torch.save({"model": sd, "epoch": 3}, path)
    msg = error_of(path)
    assert "not a SAM state dict" in msg and "wrapped under 'model'" in msg


def test_sama_file_is_refused(tmp_path, tiny_file):
    path, _ = tiny_file
    sama_path = tmp_path / "sama.pt"
    save_sama(SAMA(load_sam(path)), sama_path, sam_identity(path, "tiny"), TASKS)
    msg = error_of(sama_path)
    assert "not a SAM state dict: a SAMA checkpoint" in msg and "load_sama" in msg


def test_sama_checkpoint_records_the_tasks_it_trained(tmp_path, tiny_file):
    path, _ = tiny_file
    model, sam_id = SAMA(load_sam(path)), sam_identity(path, "tiny")
    cases = ((["matting"], ["matting"]), (["seg"], ["seg"]), (["matting", "seg"], list(TASKS)))
    for tasks, recorded in cases:
        save_sama(model, tmp_path / "sama.pt", sam_id, tasks)
        assert read_sama_checkpoint(tmp_path / "sama.pt")["tasks"] == recorded
    for bad in ([], ["alpha"], ["seg", "seg"]):
        with pytest.raises(CheckpointError, match="trained tasks"):
            save_sama(model, tmp_path / "bad.pt", sam_id, bad)
    assert not (tmp_path / "bad.pt").exists()

    ckpt = read_checkpoint(tmp_path / "sama.pt")
    for value, fragment in ((None, "records no trained tasks"), ("both", "trained tasks 'both'")):
        if value is None:
            del ckpt["tasks"]
        else:
            ckpt["tasks"] = value
        torch.save(ckpt, tmp_path / "old.pt")
        with pytest.raises(CheckpointError) as info:
            read_sama_checkpoint(tmp_path / "old.pt")
        msg = str(info.value)
        assert msg.startswith(f"{tmp_path / 'old.pt'}: ") and fragment in msg and "\n" not in msg


def test_truncated_file(tmp_path, tiny_file):
    good, _ = tiny_file
    data = good.read_bytes()
    path = tmp_path / "half.pth"
    path.write_bytes(data[: len(data) // 2])
    assert "truncated" in error_of(path)


def test_garbage_bytes(tmp_path):
    path = tmp_path / "garbage.pth"
    path.write_bytes(os.urandom(4096))
    assert "unreadable" in error_of(path)
    path.write_bytes(b"just some text\n")
    assert "unreadable" in error_of(path)


def test_empty_missing_and_directory(tmp_path):
    (tmp_path / "empty.pth").write_bytes(b"")
    assert "empty file" in error_of(tmp_path / "empty.pth")
    assert "no such file" in error_of(tmp_path / "nope.pth")
    assert "directory" in error_of(tmp_path)


def test_pickled_python_objects_are_not_run(tmp_path):
    path = tmp_path / "objects.pth"
    # weights_only refuses non-tensor globals
    torch.save({"image_encoder.pos_embed": Path("x")}, path)
    msg = error_of(path)
    assert "Python objects" in msg and "Path" in msg


class RunsCode:
    def __reduce__(self):
        return (os.system, ("touch ran",))


@pytest.mark.parametrize("zip_format", [True, False])
def test_a_checkpoint_calling_os_system_is_named_and_never_run(zip_format, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    torch.save({"w": RunsCode()}, path, _use_new_zipfile_serialization=zip_format)
    msg = error_of(path)
    assert msg == f"{path}: holds Python objects ({os.system.__module__}.system), which are " \
                  f"never unpickled", msg
    assert not (tmp_path / "ran").exists()


def test_wrong_variant_asked(tiny_file):
    path, _ = tiny_file
    msg = error_of(path, variant="vit_b")
    assert "wrong variant: asked for vit_b" in msg and "holds tiny" in msg


def test_missing_keys(tmp_path, tiny_file):
    _, sd = tiny_file
    gone = [
        "mask_decoder.iou_token.weight",
        "prompt_encoder.no_mask_embed.weight",
        "image_encoder.neck.0.weight",
    ]
    path = tmp_path / "missing.pth"
    torch.save({k: v for k, v in sd.items() if k not in gone}, path)
    msg = error_of(path)
    assert "3 missing keys" in msg and all(k in msg for k in gone) and "unexpected" not in msg


def test_many_missing_keys_are_counted_not_all_listed(tmp_path, tiny_file):
    _, sd = tiny_file
    path = tmp_path / "no_decoder.pth"
    kept = {k: v for k, v in sd.items() if not k.startswith("mask_decoder.")}
    torch.save(kept, path)
    msg = error_of(path)
    assert (
        f"{len(sd) - len(kept)} missing keys (mask_decoder." in msg
        and "more" in msg
        and len(msg) < 400
    )


def test_unexpected_keys(tmp_path, tiny_file):
    _, sd = tiny_file
    path = tmp_path / "extra.pth"
    torch.save(dict(sd, **{"mask_decoder.hf_token.weight": torch.zeros(1, 64)}), path)
    msg = error_of(path)
    assert (
        "1 unexpected key (mask_decoder.hf_token.weight)" in msg
        and "HQ-SAM" in msg
        and "missing" not in msg
    )


def test_shape_mismatch(tmp_path, tiny_file):
    _, sd = tiny_file
    key = "image_encoder.blocks.1.attn.rel_pos_h"  # a global block: 31 rows; a windowed one has 7
    assert sd[key].shape == (31, 32)
    path = tmp_path / "shape.pth"
    torch.save(dict(sd, **{key: torch.zeros(7, 32)}), path)
    msg = error_of(path)
    assert f"shape mismatch at {key}: file [7, 32], model [31, 32]" in msg


def test_variant_cannot_be_told(tmp_path, tiny_file):
    _, sd = tiny_file
    path = tmp_path / "odd.pth"
    torch.save(dict(sd, **{"image_encoder.pos_embed": torch.zeros(1, 16, 16, 80)}), path)
    msg = error_of(path)
    assert "cannot tell the SAM variant" in msg and "[1, 16, 16, 80]" in msg
    assert "shape mismatch at image_encoder.pos_embed" in error_of(path, variant="tiny")


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------


def run_cli(*args) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")  # the tiny model: one thread is fastest
    return subprocess.run([sys.executable, str(ROOT / "load_sam_weights.py"), *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120, env=env)


def test_cli_good_tiny_checkpoint(tiny_file):
    path, _ = tiny_file
    out = run_cli(path)
    assert out.returncode == 0, out.stderr
    counts = param_counts(Sam(TINY))
    assert "variant: tiny" in out.stdout
    for part, n in counts.items():
        assert f"{part} {n:,}" in out.stdout
    assert (
        "mask area" in out.stdout
        and "predicted IoU" in out.stdout
        and "Traceback" not in out.stderr
    )


def test_cli_bad_files(tmp_path, tiny_file):
    path, sd = tiny_file
    half = tmp_path / "half.pth"
    half.write_bytes(path.read_bytes()[:1000])
    cases = [(half, [], "truncated"), (tmp_path / "nope.pth", [], "no such file"),
             (path, ["--variant", "vit_h"], "wrong variant")]
    for file, extra, problem in cases:
        out = run_cli(file, *extra)
        assert out.returncode == 2, out
        lines = out.stderr.strip().splitlines()
        assert (
            len(lines) == 1 and lines[0].startswith(f"error: {file}: ") and problem in lines[0]
        ), out.stderr
        assert "Traceback" not in out.stderr + out.stdout and out.stdout == ""


def test_main_returns_2_in_process(tmp_path, capsys):
    path = tmp_path / "garbage.pth"
    path.write_bytes(b"\x00" * 64)
    assert main([str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {path}: ")


# ----------------------------------------------------------------------------------------------
# Files of another format or precision, and broken weights
# ----------------------------------------------------------------------------------------------


def safetensors_bytes(tensors: dict) -> bytes:
    """The safetensors layout written by hand (the package is not a dependency): an 8-byte
    little-endian header length, the JSON header, then the raw little-endian float32 data."""
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        blob = t.contiguous().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header).encode()
    return len(text).to_bytes(8, "little") + text + b"".join(blobs)


def test_safetensors_renamed_pth_is_named_as_such(tmp_path, tiny_file, capsys):
    _, sd = tiny_file
    path = tmp_path / "sam_tiny.pth"
    path.write_bytes(safetensors_bytes({k: sd[k] for k in list(sd)[:4]}))
    msg = error_of(path)
    assert "looks like a safetensors file" in msg and "load_file" in msg
    assert main([str(path)]) == 2  # the command line: one line, exit 2
    err = capsys.readouterr().err
    assert err == f"error: {msg}\n"


def test_a_pytorch_file_is_not_taken_for_safetensors(tiny_file, tmp_path):
    path, _ = tiny_file
    assert not looks_like_safetensors(path)
    legacy = tmp_path / "legacy.pth"  # the pre-1.6 pickle format: starts with 0x80
    torch.save({"a": torch.zeros(2)}, legacy, _use_new_zipfile_serialization=False)
    assert not looks_like_safetensors(legacy)
    short = tmp_path / "cut.pth"  # a header length beyond the file's end
    short.write_bytes(safetensors_bytes({"a": torch.zeros(2)})[:20])
    assert not looks_like_safetensors(short)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_other_precisions_are_converted_with_one_warning_line(dtype, tmp_path, tiny_file, capsys):
    _, sd = tiny_file
    path = tmp_path / "sam_half.pth"
    torch.save({k: v.to(dtype) if v.is_floating_point() else v for k, v in sd.items()}, path)
    capsys.readouterr()
    model = load_sam(path)
    err = capsys.readouterr().err
    name = str(dtype).removeprefix("torch.")
    assert err == f"warning: {path}: {name} weights, converted to float32\n"
    loaded = model.state_dict()
    for k, v in sd.items():  # float32 in memory, the file's values exactly
        assert loaded[k].dtype == v.dtype
        assert torch.equal(loaded[k], v.to(dtype).to(v.dtype)), k
    load_sam(tiny_file[0])
    assert capsys.readouterr().err == ""  # a float32 file: no word


def test_sama_checkpoint_in_half_precision_warns_once(tmp_path, tiny_file, capsys):
    path, _ = tiny_file
    sama_path = tmp_path / "sama.pt"
    save_sama(SAMA(load_sam(path)), sama_path, sam_identity(path, "tiny"), TASKS)
    ckpt = torch.load(sama_path, weights_only=True)
    ckpt["state_dict"] = {k: v.half() if v.is_floating_point() else v
                          for k, v in ckpt["state_dict"].items()}
    torch.save(ckpt, sama_path)
    capsys.readouterr()
    model = load_sama(sama_path)
    warned = capsys.readouterr().err
    assert warned == f"warning: {sama_path}: float16 weights, converted to float32\n"
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_nan_or_inf_weights_are_refused(tmp_path, tiny_file):
    _, sd = tiny_file
    path = tmp_path / "nan.pth"
    key = "mask_decoder.iou_token.weight"
    broken = dict(sd, **{key: sd[key].clone()})
    broken[key][0, 0] = float("nan")
    torch.save(broken, path)
    msg = error_of(path)
    assert f"NaN or inf in 1 tensor ({key})" in msg and "broken weights" in msg


def test_nan_in_a_sama_checkpoint_is_refused(tmp_path, tiny_file):
    path, _ = tiny_file
    sama_path = tmp_path / "sama.pt"
    save_sama(SAMA(load_sam(path)), sama_path, sam_identity(path, "tiny"), TASKS)
    ckpt = torch.load(sama_path, weights_only=True)
    key = next(k for k, v in ckpt["state_dict"].items() if v.is_floating_point())
    ckpt["state_dict"][key] = torch.full_like(ckpt["state_dict"][key], float("inf"))
    torch.save(ckpt, sama_path)
    expected = rf"^{re.escape(str(sama_path))}: NaN or inf in 1 tensor \({key}\)"
    with pytest.raises(CheckpointError, match=expected):
        load_sama(sama_path)


def test_sama_checkpoint_from_before_the_detail_path_says_so(tmp_path, tiny_file):
    """A sama.pt saved before F_early reached the heads has no early_up tensors: one line naming
    them and what to do."""
    path, _ = tiny_file
    sama_path = tmp_path / "sama.pt"
    save_sama(SAMA(load_sam(path)), sama_path, sam_identity(path, "tiny"), TASKS)
    ckpt = torch.load(sama_path, weights_only=True)
    ckpt["state_dict"] = {k: v for k, v in ckpt["state_dict"].items()
                          if not k.startswith("early_up.")}
    torch.save(ckpt, sama_path)
    with pytest.raises(CheckpointError, match=r"6 missing keys \(early_up.*train it again$"):
        load_sama(sama_path)


def test_sama_checkpoint_records_a_mask_threshold_or_none(tmp_path, tiny_file):
    path, _ = tiny_file
    model, sam_id = SAMA(load_sam(path)), sam_identity(path, "tiny")
    save_sama(model, tmp_path / "plain.pt", sam_id, TASKS)
    assert "threshold" not in read_checkpoint(tmp_path / "plain.pt")  # today's files, unchanged
    assert read_sama_checkpoint(tmp_path / "plain.pt")["threshold"] == 0.5
    save_sama(model, tmp_path / "picked.pt", sam_id, TASKS, threshold=0.35)
    assert read_sama_checkpoint(tmp_path / "picked.pt")["threshold"] == 0.35
    with pytest.raises(CheckpointError, match="mask threshold 1.0"):
        save_sama(model, tmp_path / "bad.pt", sam_id, TASKS, threshold=1.0)
    ckpt = read_checkpoint(tmp_path / "picked.pt")
    for bad in (0, float("nan"), "0.5", True):
        ckpt["threshold"] = bad
        torch.save(ckpt, tmp_path / "bad.pt")
        with pytest.raises(CheckpointError) as info:
            read_sama_checkpoint(tmp_path / "bad.pt")
        msg = str(info.value)
        assert msg.startswith(f"{tmp_path / 'bad.pt'}: mask threshold ") and "\n" not in msg
