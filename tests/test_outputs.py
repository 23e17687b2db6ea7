"""Issue 22, one test per finding: one run's outputs are that run's, whatever is interrupted, run
twice at once, or pointed at the wrong place.

Tiny model, toy trees of a few images; the interrupt and two-runs cases start train.py and
evaluate.py as real processes (each step or image slowed by a sleep, so that a signal lands
mid-run) and send them real signals."""

from __future__ import annotations

import errno
import io
import json
import os
import pickle
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import evaluate
import frame
import outputs
import predict
import readers
import train
from load_sam_weights import (
    CheckpointError,
    atomic_save,
    load_sam,
    load_sama,
    read_checkpoint,
    sam_identity,
    save_sama,
)
from miniature import ablate, pretrain_sam, synthetic
from predictor import Predictor
from sam import SAM_VARIANTS, Sam
from sama import SAMA, TASKS

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.torch_threads

ROOT = Path(__file__).resolve().parents[1]
DEAD_PID = 2**30  # above Linux's largest pid (2**22): no process has it
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("toy")
    synthetic.make_toy(root, seed=0, n_train=2, n_val=3, n_test=0, n_fg=0, n_comp=0, n_aim500=0,
                       n_bg=0)
    return root


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> dict:
    """A random tiny SAM and two SAMA checkpoints on it (other weights), side by side."""
    folder = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    sam_path = folder / "sam_tiny.pth"
    atomic_save(Sam(SAM_VARIANTS["tiny"]).state_dict(), sam_path)
    paths = {"sam": sam_path}
    for seed, name in ((0, "a"), (1, "b")):
        torch.manual_seed(seed)
        paths[name] = folder / f"sama-{name}.pt"
        save_sama(SAMA(load_sam(sam_path)), paths[name], sam_identity(sam_path, "tiny"), TASKS)
    return paths


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip() and "%|" not in line]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def evaluate_args(toy, out, checkpoint, *extra) -> list[str]:
    return ["--split", "DIS-VD", "--data", str(toy / "DIS5K"), "--checkpoint", str(checkpoint),
            "--out", str(out), "--no-progress", *map(str, extra)]


def train_args(toy, out, sam, *extra) -> list[str]:
    return ["--model", "tiny", "--data", str(toy / "DIS5K"), "--tasks", "seg", "--batch-size",
            "1", "--workers", "0", "--val-every", "0", "--log-every", "1", "--warmup-steps", "1",
            "--sam-checkpoint", str(sam), "--out", str(out), *map(str, extra)]


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def slowed(module: str, name: str, seconds: float, argv: list[str],
           where: str = "") -> subprocess.Popen:
    """`python module.py argv` as its own process, `where.name` (default `module.name`) slowed by
    a sleep per call."""
    where = where or module
    # SIGINT as a terminal delivers it: a shell's background job starts with SIGINT ignored, and
    # Python then installs no KeyboardInterrupt handler
    code = (f"import signal, sys, time, {module}, {where}\n"
            f"signal.signal(signal.SIGINT, signal.default_int_handler)\n"
            f"f = {where}.{name}\n"
            f"def slow(*a, **k):\n    time.sleep({seconds})\n    return f(*a, **k)\n"
            f"{where}.{name} = slow\n"
            f"sys.argv[0] = '{module}.py'\n"
            f"sys.exit({module}.main(sys.argv[1:]))\n")
    return subprocess.Popen([sys.executable, "-c", code, *argv], cwd=ROOT, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition, process: subprocess.Popen, timeout: float = 120) -> None:
    t0 = time.time()
    while not condition():
        assert process.poll() is None, process.communicate()
        assert time.time() - t0 < timeout, "timed out"
        time.sleep(0.05)


# ----------------------------------------------------------------------------------------------
# 1, 11: evaluate.py -- two runs at once, ctrl-C, --resume exact; a fresh run never mixes
# ----------------------------------------------------------------------------------------------


def test_evaluate_two_runs_and_ctrl_c_then_resume_scores_as_a_fresh_run(toy, ckpt, tmp_path,
                                                                        capsys):
    out = tmp_path / "eval"
    first = slowed("evaluate", "save_png", 1.0, evaluate_args(toy, out, ckpt["a"]), "scoring")
    try:
        wait_for(lambda: any(out.glob("pred/*.png")), first)
        # a second run into the same folder: refused in one line naming the first
        capsys.readouterr()
        assert evaluate.main(evaluate_args(toy, out, ckpt["b"], "--resume")) == 2
        assert f"in use by pid {first.pid}" in one_line(capsys.readouterr().err)
        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=60)
    finally:
        first.kill()
    assert first.returncode == 130 and one_line(err) == "interrupted; --resume continues"
    assert not list(out.rglob("*.tmp-*")) and not (out / outputs.LOCK).exists()
    assert not (out / "metrics.json").exists()

    # a fresh run of other weights into it: refused, nothing touched (it mixed them before)
    before = snapshot(out)
    assert evaluate.main(evaluate_args(toy, out, ckpt["b"])) == 2
    assert "holds an earlier evaluation" in one_line(capsys.readouterr().err)
    assert evaluate.main(evaluate_args(toy, out, ckpt["b"], "--resume")) == 2
    assert "another checkpoint_sha256" in one_line(capsys.readouterr().err)
    assert snapshot(out) == before

    # --resume continues: the scores of a fresh run; a kill -9's leftover is removed
    leftover = out / "pred" / f"DIS-VD_0002.png.tmp-{DEAD_PID}"
    leftover.write_bytes(b"\x89PNG")
    assert evaluate.main(evaluate_args(toy, out, ckpt["a"], "--resume")) == 0
    assert not leftover.exists()
    assert evaluate.main(evaluate_args(toy, tmp_path / "fresh", ckpt["a"])) == 0
    scores = [json.loads((o / "metrics.json").read_text())["scores"]
              for o in (out, tmp_path / "fresh")]
    assert scores[0] == scores[1]
    # --overwrite: every prediction is the new model's
    assert evaluate.main(evaluate_args(toy, out, ckpt["b"], "--overwrite")) == 0
    assert evaluate.main(evaluate_args(toy, tmp_path / "fresh-b", ckpt["b"])) == 0
    assert (json.loads((out / "metrics.json").read_text())["scores"]
            == json.loads((tmp_path / "fresh-b" / "metrics.json").read_text())["scores"])


# ----------------------------------------------------------------------------------------------
# 4, 11: train.py -- two runs at once, SIGTERM, --resume bit-identical; nothing overwritten
# ----------------------------------------------------------------------------------------------


def test_train_two_runs_and_sigterm_then_resume_is_bit_identical(toy, ckpt, tmp_path, capsys):
    out, steps = tmp_path / "run", ("--max-steps", "5", "--save-every", "1")
    first = slowed("train", "get_lr", 0.7, train_args(toy, out, ckpt["sam"], *steps))
    try:
        wait_for(lambda: (out / "last.pt").exists(), first)
        capsys.readouterr()
        assert train.main(train_args(toy, out, ckpt["sam"], *steps, "--resume")) == 2
        assert f"in use by pid {first.pid}" in one_line(capsys.readouterr().err)
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=60)
    finally:
        first.kill()
    assert first.returncode == 130 and one_line(err) == "interrupted; --resume continues"
    assert not list(out.glob("*.tmp-*")) and not (out / outputs.LOCK).exists()
    stopped = read_checkpoint(out / "last.pt")["step"]
    assert 1 <= stopped < 5

    # a fresh run into it is refused; --resume ends where a straight run ends, tensor for tensor
    assert train.main(train_args(toy, out, ckpt["sam"], *steps)) == 2
    assert "a training run is there already" in one_line(capsys.readouterr().err)
    assert train.main(train_args(toy, out, ckpt["sam"], *steps, "--resume")) == 0
    straight = tmp_path / "straight"
    assert train.main(train_args(toy, straight, ckpt["sam"], *steps)) == 0
    a, b = (read_checkpoint(o / "sama.pt")["state_dict"] for o in (out, straight))
    assert all(torch.equal(a[k], b[k]) for k in a)
    records = [json.loads(r) for r in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5]


def test_a_fresh_train_run_overwrites_nothing_and_a_stale_lock_is_taken_over(toy, ckpt, tmp_path,
                                                                             capsys):
    for name in ("sama.pt", "log.jsonl"):  # a downloaded checkpoint; a run killed before saving
        out = tmp_path / name
        out.mkdir()
        (out / name).write_bytes(b"mine")
        capsys.readouterr()
        assert train.main(train_args(toy, out, ckpt["sam"], "--max-steps", "1")) == 2
        assert f"holds {name} and no last.pt" in one_line(capsys.readouterr().err)
        assert snapshot(out) == {name: b"mine"}
    out = tmp_path / "stale"
    out.mkdir()
    (out / outputs.LOCK).write_text(json.dumps({"pid": DEAD_PID, "host": os.uname().nodename}))
    assert train.main(train_args(toy, out, ckpt["sam"], "--max-steps", "1")) == 0
    assert "removed the lock of a run that no longer runs" in capsys.readouterr().err
    assert not (out / outputs.LOCK).exists() and (out / "sama.pt").is_file()


def test_ctrl_c_before_the_first_save_keeps_nothing_and_a_fresh_run_starts_clean(
        toy, ckpt, tmp_path, monkeypatch, capsys):
    out, real, calls = tmp_path / "run", train.get_lr, []

    def interrupted_at_step_2(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(train, "get_lr", interrupted_at_step_2)
    argv = train_args(toy, out, ckpt["sam"], "--max-steps", "2", "--save-every", "10")
    capsys.readouterr()
    assert train.main(argv) == 130
    assert one_line(capsys.readouterr().err) == ("interrupted before the first checkpoint; "
                                                 "nothing kept")
    assert not out.exists() or not any(out.iterdir())  # no log of steps nothing holds
    monkeypatch.setattr(train, "get_lr", real)
    assert train.main(argv) == 0
    assert [json.loads(r)["step"] for r in (out / "log.jsonl").read_text().splitlines()] == [1, 2]


# ----------------------------------------------------------------------------------------------
# 2: --resume knows the data
# ----------------------------------------------------------------------------------------------


def test_resume_refuses_other_data_under_the_same_names(toy, ckpt, tmp_path, capsys):
    data_copy = tmp_path / "toy"
    data_copy.mkdir()
    import shutil

    shutil.copytree(toy / "DIS5K", data_copy / "DIS5K")
    out = tmp_path / "eval"
    assert evaluate.main(evaluate_args(data_copy, out, ckpt["a"], "--limit", "1")) == 0
    image = data_copy / "DIS5K" / "DIS-VD" / "im" / "DIS-VD_0000.jpg"
    Image.fromarray(readers.load_image(image)[:, ::-1].copy()).save(image)  # mirrored, same name
    before = snapshot(out)
    capsys.readouterr()
    assert evaluate.main(evaluate_args(data_copy, out, ckpt["a"], "--limit", "1", "--resume")) == 2
    assert "another data" in one_line(capsys.readouterr().err)
    assert snapshot(out) == before

    run = tmp_path / "run"
    argv = train_args(data_copy, run, ckpt["sam"], "--max-steps", "1")
    assert train.main(argv) == 0
    train_image = data_copy / "DIS5K" / "DIS-TR" / "im" / "DIS-TR_0000.jpg"
    Image.fromarray(readers.load_image(train_image)[::-1].copy()).save(train_image)
    capsys.readouterr()
    assert train.main(train_args(data_copy, run, ckpt["sam"], "--max-steps", "2", "--resume")) == 2
    assert "other training files" in one_line(capsys.readouterr().err)


# ----------------------------------------------------------------------------------------------
# 3: the SHA-256 recorded is the one of the bytes loaded
# ----------------------------------------------------------------------------------------------


def test_the_recorded_sha256_is_of_the_bytes_loaded(toy, ckpt, tmp_path, monkeypatch):
    import load_sam_weights

    sama = tmp_path / "sama.pt"
    sama.write_bytes(ckpt["a"].read_bytes())
    (tmp_path / "sam_tiny.pth").write_bytes(ckpt["sam"].read_bytes())
    real_load = torch.load

    def load_then_retrained(*args, **kwargs):  # train.py saves a new sama.pt right after the read
        obj = real_load(*args, **kwargs)
        if isinstance(obj, dict) and obj.get("format") == "sama":
            sama.write_bytes(ckpt["b"].read_bytes())
        return obj

    monkeypatch.setattr(load_sam_weights.torch, "load", load_then_retrained)
    out = tmp_path / "eval"
    assert evaluate.main(evaluate_args(toy, out, sama, "--limit", "1")) == 0
    settings = json.loads((out / "settings.json").read_text())
    assert settings["checkpoint_sha256"] == outputs.sha256_file(ckpt["a"])  # what predicted


# ----------------------------------------------------------------------------------------------
# 5, 13: predict.py -- never its input, nothing existing without --overwrite, --out dir/, exact box
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("photo") / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (173, 228, 3), np.uint8)).save(path)
    return path


def run_predict(image, checkpoint, capsys, *argv) -> tuple[int, str]:
    capsys.readouterr()
    code = predict.main([str(image), "--box", "10", "10", "100", "90", "--checkpoint",
                         str(checkpoint), *map(str, argv)])
    return code, capsys.readouterr().err


def test_predict_never_overwrites_its_input_or_earlier_outputs(photo, ckpt, tmp_path, capsys):
    x = tmp_path / "x"
    x.mkdir()
    image = x / "photo_mask.png"
    image.write_bytes(photo.read_bytes())
    code, err = run_predict(image, ckpt["a"], capsys, "--out", x / "photo")
    assert code == 2 and "is the input image" in one_line(err)
    code, err = run_predict(image, ckpt["a"], capsys, "--out", x / "photo", "--overwrite")
    assert code == 2 and "is the input image" in one_line(err)
    assert image.read_bytes() == photo.read_bytes()
    code, err = run_predict(photo, ckpt["a"], capsys, "--out", tmp_path / "p")
    assert code == 0, err
    mask = (tmp_path / "p_mask.png").read_bytes()
    code, err = run_predict(photo, ckpt["a"], capsys, "--out", tmp_path / "p")
    assert code == 2 and "exists; --overwrite replaces it" in one_line(err)
    assert (tmp_path / "p_mask.png").read_bytes() == mask
    leftover = tmp_path / f"p_alpha.png.tmp-{DEAD_PID}"  # of a run killed mid-write
    leftover.write_bytes(b"\x89PNG")
    assert run_predict(photo, ckpt["a"], capsys, "--out", tmp_path / "p", "--overwrite")[0] == 0
    assert not leftover.exists()


def test_predict_out_folder_with_a_slash_and_an_exact_box(photo, ckpt, tmp_path, capsys):
    code, err = run_predict(photo, ckpt["a"], capsys, "--out", f"{tmp_path / 'dir'}/")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "dir").iterdir()) == [
        "photo_alpha.png", "photo_cutout.png", "photo_mask.png"]
    capsys.readouterr()
    assert predict.main([str(photo), "--box", "228.0001", "0", "229", "173", "--checkpoint",
                         str(ckpt["a"]), "--out", str(tmp_path / "q")]) == 2
    assert one_line(capsys.readouterr().err) == ("error: box 228.0001 0 229 173: outside the "
                                                 "228x173 image")


# ----------------------------------------------------------------------------------------------
# 10: the Predictor validates what it is given, as the command line does
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("labels", [[2], [3], [5], [-7], [1.5]])
def test_predictor_refuses_labels_other_than_0_and_1(ckpt, labels):
    predictor = Predictor(load_sama(ckpt["a"]), TASKS)
    predictor.set_image(np.zeros((40, 60, 3), np.uint8))
    with pytest.raises(frame.PromptError, match="only 1 .foreground. and 0 .background."):
        predictor.predict(np.array([[10.0, 10.0]]), np.array(labels))


@pytest.mark.parametrize("box, problem", [([30, 10, 10, 20], "needs x1 >= x0"),
                                          ([61, 0, 70, 20], "outside the 60x40 image"),
                                          ([-9, 0, -1, 20], "outside the 60x40 image")])
def test_predictor_refuses_reversed_and_off_image_boxes(ckpt, box, problem):
    predictor = Predictor(load_sama(ckpt["a"]), TASKS)
    predictor.set_image(np.zeros((40, 60, 3), np.uint8))
    with pytest.raises(frame.PromptError, match=problem):
        predictor.predict(box=np.array(box, dtype=float))


@pytest.mark.parametrize("image", [np.zeros((40, 60), np.uint8), np.zeros((40, 60, 4), np.uint8),
                                   np.zeros((40, 60, 3), np.float32)])
def test_predictor_refuses_images_that_are_not_hw3_uint8(ckpt, image):
    predictor = Predictor(load_sama(ckpt["a"]), TASKS)
    with pytest.raises(ValueError, match=r"an \(H, W, 3\) uint8 RGB array is needed"):
        predictor.set_image(image)


# ----------------------------------------------------------------------------------------------
# 6, 11: outputs that cannot be written are found before any work
# ----------------------------------------------------------------------------------------------


def test_unwritable_outputs_are_refused_before_any_work(toy, ckpt, tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("mine")
    monkeypatch.setattr(pretrain_sam, "pretrain", lambda *a: pytest.fail("trained first"))
    assert pretrain_sam.main(["--out", str(blocker / "x.pth")]) == 2
    assert "is a file" in one_line(capsys.readouterr().err)
    assert pretrain_sam.main(["--out", str(ckpt["sam"])]) == 2  # a file a user has
    assert "exists; --overwrite replaces it" in one_line(capsys.readouterr().err)

    monkeypatch.setattr(train, "build_datasets", lambda *a: pytest.fail("read the data first"))
    out = tmp_path / "run"
    (out / "sama.pt").mkdir(parents=True)
    assert train.main(train_args(toy, out, ckpt["sam"], "--max-steps", "1")) == 2
    assert "sama.pt: is a folder" in one_line(capsys.readouterr().err)
    assert train.main(train_args(toy, blocker / "run", ckpt["sam"], "--max-steps", "1")) == 2
    assert "is a file" in one_line(capsys.readouterr().err)

    monkeypatch.setattr(readers, "check_pairs", lambda *a, **k: pytest.fail("read the data first"))
    assert evaluate.main(evaluate_args(toy, blocker / "eval", ckpt["a"])) == 2
    assert "is a file" in one_line(capsys.readouterr().err)
    out = tmp_path / "eval"
    out.mkdir()
    (out / "pred").write_text("mine")
    assert evaluate.main(evaluate_args(toy, out, ckpt["a"], "--resume")) == 2
    assert "pred: is a file, where the predictions go" in one_line(capsys.readouterr().err)

    assert synthetic.main([str(blocker / "bench")]) == 2
    assert "is a file" in one_line(capsys.readouterr().err)
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.chdir(empty)
    assert synthetic.main(["."]) == 2
    assert "the current folder" in one_line(capsys.readouterr().err)


# ----------------------------------------------------------------------------------------------
# 11: a full disk is one line and leaves nothing half-written
# ----------------------------------------------------------------------------------------------


def full_disk(monkeypatch, name: str) -> None:
    """outputs.write_bytes' file for `name` (or the file `name` itself, as a lock) fills the disk
    after a few bytes."""
    real_open = open

    class Full(io.RawIOBase):
        def __init__(self, path, mode):
            self.f = real_open(path, "xb" if "x" in mode else "wb")

        def write(self, b):
            self.f.write(bytes(b)[:10])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def fileno(self):
            return self.f.fileno()

        def close(self):
            self.f.close()
            super().close()

    def fake_open(path, mode="r", *args, **kwargs):
        if Path(path).name == name or Path(path).name.startswith(name + ".tmp-"):
            return Full(path, mode)
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(outputs, "open", fake_open, raising=False)


def test_a_full_disk_is_one_line_and_leaves_no_half_file(toy, ckpt, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    full_disk(monkeypatch, "last.pt")
    capsys.readouterr()
    assert train.main(train_args(toy, out, ckpt["sam"], "--max-steps", "1")) == 2
    line = one_line(capsys.readouterr().err)
    assert line == (f"error: {out / 'last.pt'}: cannot write (no space left on device); left as "
                    f"it was")
    assert not list(out.glob("*.tmp-*")) and not (out / "last.pt").exists()

    out = tmp_path / "eval"
    full_disk(monkeypatch, "results.md")
    assert evaluate.main(evaluate_args(toy, out, ckpt["a"], "--limit", "1")) == 2
    assert "results.md: cannot write (no space left on device)" in one_line(
        capsys.readouterr().err)
    assert not list(out.glob("*.tmp-*")) and not (out / "results.md").exists()


def test_a_full_disk_at_the_lock_leaves_none_and_a_dead_runs_empty_lock_is_taken_over(
        toy, ckpt, tmp_path, monkeypatch, capsys):
    out = tmp_path / "eval"
    with monkeypatch.context() as m:
        full_disk(m, outputs.LOCK)
        assert evaluate.main(evaluate_args(toy, out, ckpt["a"], "--limit", "1")) == 2
    assert one_line(capsys.readouterr().err) == (f"error: {out}: cannot write there (no space "
                                                 f"left on device)")
    assert not out.exists()  # made for the run, removed with its lock

    out.mkdir()
    (out / outputs.LOCK).write_bytes(b"")  # being written by its run this instant: refused
    assert evaluate.main(evaluate_args(toy, out, ckpt["a"], "--limit", "1")) == 2
    assert "in use by another run" in one_line(capsys.readouterr().err)
    old = time.time() - 2 * outputs.LOCK_WRITE_SECONDS  # left empty by a run that died writing it
    os.utime(out / outputs.LOCK, (old, old))
    assert evaluate.main(evaluate_args(toy, out, ckpt["a"], "--limit", "1")) == 0
    assert "removed the lock of a run that no longer runs" in capsys.readouterr().err
    assert not (out / outputs.LOCK).exists() and (out / "metrics.json").is_file()


# ----------------------------------------------------------------------------------------------
# 9, 11, 13: checkpoints -- a flipped byte, hand-edited headers, a pickle that would run code
# ----------------------------------------------------------------------------------------------


def test_a_flipped_byte_in_a_checkpoint_is_refused(ckpt, tmp_path):
    raw = bytearray(ckpt["a"].read_bytes())
    entry = next(i for i in zipfile.ZipFile(ckpt["a"]).infolist() if "/data/" in i.filename
                 and i.file_size > 1024)
    raw[entry.header_offset + 30 + len(entry.filename) + 200] ^= 1  # inside the tensor's bytes
    flipped = tmp_path / "sama-a.pt"
    flipped.write_bytes(bytes(raw))
    (tmp_path / "sam_tiny.pth").write_bytes(ckpt["sam"].read_bytes())
    with pytest.raises(CheckpointError, match="fails its CRC-32 check") as e:
        load_sama(flipped)
    assert "\n" not in str(e.value)


def test_hand_edited_headers_are_one_line(toy, ckpt, tmp_path, capsys):
    sama = read_checkpoint(ckpt["a"])
    del sama["config"]["use_mvle"]
    edited = tmp_path / "sama.pt"
    atomic_save(sama, edited)
    (tmp_path / "sam_tiny.pth").write_bytes(ckpt["sam"].read_bytes())
    assert evaluate.main(evaluate_args(toy, tmp_path / "e1", edited)) == 2
    assert "use_mvle and use_local_adapter" in one_line(capsys.readouterr().err)

    out = tmp_path / "run"
    assert train.main(train_args(toy, out, ckpt["sam"], "--max-steps", "1")) == 0
    state = read_checkpoint(out / "last.pt")
    del state["optimizer"]
    atomic_save(state, out / "last.pt")
    capsys.readouterr()
    assert train.main(train_args(toy, out, ckpt["sam"], "--max-steps", "2", "--resume")) == 2
    assert "not a whole training state (optimizer" in one_line(capsys.readouterr().err)

    out = tmp_path / "e2"
    assert evaluate.main(evaluate_args(toy, out, ckpt["a"], "--limit", "1")) == 0
    (out / "settings.json").write_text('{"split": "DIS-VD", ')
    capsys.readouterr()
    assert evaluate.main(evaluate_args(toy, out, ckpt["a"], "--limit", "1", "--resume")) == 2
    assert "settings.json: unreadable" in one_line(capsys.readouterr().err)


class RunsCode:
    def __reduce__(self):
        return (os.system, ("touch ran",))


def test_a_pickle_that_would_run_code_is_named_as_such(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps({"w": RunsCode()}))
    with pytest.raises(CheckpointError, match=r"holds Python objects \(posix.system\), which are "
                                              r"never unpickled"):
        load_sam(path)
    assert not (tmp_path / "ran").exists()


# ----------------------------------------------------------------------------------------------
# 7, 12: ablate.py's children die with it, a relative --out; synthetic.py's leftovers
# ----------------------------------------------------------------------------------------------


def alive(pid: int) -> bool:
    """A process that runs (a zombie waiting for init to reap it has ended)."""
    status = Path(f"/proc/{pid}/status")
    try:
        return "State:\tZ" not in status.read_text()
    except FileNotFoundError:
        return False


def test_ablate_children_die_with_a_killed_study(tmp_path):
    pid_file, child = tmp_path / "child.pid", tmp_path / "child.py"
    child.write_text(f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
                     f"time.sleep(600)\n")
    study = (f"import sys\nfrom miniature import recipe\n"
             f"recipe.run_command([sys.executable, {str(child)!r}], "
             f"recipe.Path({str(tmp_path / 'log')!r}), 1)\n")
    parent = subprocess.Popen([sys.executable, "-c", study], cwd=ROOT, env=ENV)
    try:
        wait_for(lambda: pid_file.exists() and pid_file.read_text(), parent)
        pid = int(pid_file.read_text())
        parent.send_signal(signal.SIGKILL)  # kill -9: no handler of the study runs
        parent.wait()
        t0 = time.time()
        while alive(pid) and time.time() - t0 < 10:
            time.sleep(0.05)
        assert not alive(pid), "the study's child outlived it"
    finally:
        parent.kill()
        if alive(int(pid_file.read_text() or 0) if pid_file.exists() else 0):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)


def test_ablate_resolves_a_relative_out(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(ablate, "study", lambda args: seen.append(args.out) or 0)
    monkeypatch.chdir(tmp_path)
    assert ablate.main(["--out", "study"]) == 0
    assert seen == [tmp_path / "study"]


def test_synthetic_removes_the_leftovers_of_killed_writes(tmp_path, capsys):
    dead, live = tmp_path / f".bench.tmp-{DEAD_PID}", tmp_path / f".bench.tmp-{os.getpid()}"
    for folder in (dead, live):
        (folder / "DIS5K").mkdir(parents=True)
    synthetic.check_target(tmp_path / "bench")
    assert not dead.exists() and live.exists()  # a writer still running keeps its folder
    assert f"removed {dead} (left by an interrupted write)" in capsys.readouterr().out


def test_whole_folder_is_all_or_none(tmp_path):
    target = tmp_path / "made"
    with outputs.whole_folder(target) as tmp:
        (tmp / "a.txt").write_text("a")
        assert not target.exists()  # nothing there until the block ends
    assert (target / "a.txt").read_text() == "a"
    with pytest.raises(RuntimeError):
        with outputs.whole_folder(tmp_path / "failed") as tmp:
            (tmp / "half.txt").write_text("h")
            raise RuntimeError("the writer failed half way")
    with pytest.raises(OSError):  # another writer filled it meanwhile: theirs is kept
        with outputs.whole_folder(target) as tmp:
            (tmp / "b.txt").write_text("b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["made"]  # no temporary folder left
    assert [p.name for p in target.iterdir()] == ["a.txt"]


def test_run_main_ends_every_command_the_same_way(capsys):
    """outputs.run_main: the body's status; an option error or a listed error is one line and its
    status (the first kind it is an instance of), ctrl-C one line and 130; anything else is a bug
    and is not swallowed."""
    class Broken(ValueError):
        pass

    class Worse(Broken):
        pass

    def fails(e):
        def body():
            raise e
        return body

    errors = {Worse: 3, Broken: 2}
    assert outputs.run_main(lambda: 0, errors) == 0
    for error, status in ((outputs.OptionError("--x 1: must be 2"), 2), (Broken("bad file"), 2),
                          (Worse("NaN in the logits"), 3)):
        assert outputs.run_main(fails(error), errors) == status
        assert capsys.readouterr().err == f"error: {error}\n"
    assert outputs.run_main(fails(KeyboardInterrupt()), errors, lambda: "kept nothing") == 130
    assert capsys.readouterr().err == "kept nothing\n"
    assert outputs.run_main(fails(KeyboardInterrupt()), errors) == 130
    assert capsys.readouterr().err == "interrupted\n"
    with pytest.raises(ZeroDivisionError):
        outputs.run_main(lambda: 1 // 0, errors)
