"""A folder of one's own images (train.py --data DIR, evaluate.py --folder DIR): the layouts
DIR/{im, gt}, DIR/{im, alpha} and DIR/{fg, alpha}, the seeded held-out split, a broken background
named before step 1, and the reader end to end (train 2 steps with validation, then evaluate).
Also the checks every benchmark gets: trimaps of 0 / 128 / 255 only, alphas of any depth, symbolic
links to nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, SAM_PTH, SAMA_PT
from PIL import Image

import evaluate
import outputs
import readers
import train
from readers import DataError

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.torch_threads


def save(array: np.ndarray, path: Path, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kw)
    return path


def disc(h: int, w: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A textured image and a soft disc's alpha (a 4-pixel ramp)."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    y, x = np.mgrid[0:h, 0:w]
    alpha = np.clip((0.3 * min(h, w) - np.hypot(y - h / 2, x - w / 2)) / 4 + 0.5, 0, 1)
    return image, np.round(255 * alpha).astype(np.uint8)


def own_tree(root: Path, masks: int = 5, foregrounds: int = 4) -> Path:
    """root/{im, gt} (masks) and root/{fg, alpha} (mattes to composite)."""
    for i in range(masks):
        image, alpha = disc(40, 48, i)
        save(image, root / "im" / f"img_{i}.jpg")
        save(np.where(alpha > 128, 255, 0).astype(np.uint8), root / "gt" / f"img_{i}.png")
    for i in range(foregrounds):
        fg, alpha = disc(36, 44, 10 + i)
        save(fg, root / "fg" / f"fg_{i}.png")
        save(alpha, root / "alpha" / f"fg_{i}.png")
    return root


def one_line(error: pytest.ExceptionInfo, *fragments: str) -> None:
    msg = str(error.value)
    assert "\n" not in msg, msg
    for fragment in fragments:
        assert fragment in msg, f"{fragment!r} not in {msg!r}"


# ----------------------------------------------------------------------------------------------
# Trimaps, alphas, links
# ----------------------------------------------------------------------------------------------


def composition1k(root: Path, trimap: np.ndarray, suffix: str = ".png") -> Path:
    image, alpha = disc(32, 40, 0)
    test = root / "Combined_Dataset" / "Test_set" / "Adobe-licensed images"
    save(image, test / "merged" / "a_0.png")
    save(alpha, test / "alpha_copy" / "a_0.png")
    return save(trimap, test / "trimaps" / f"a_0{suffix}", **({"quality": 90}
                                                            if suffix == ".jpg" else {}))


@pytest.mark.parametrize("case, found", [("127", "0, 127, 255"), ("0/1/2", "0, 1, 2"),
                                         ("no unknown", "0, 255"), ("jpeg", "0,")])
def test_bad_trimaps_are_refused_before_any_prediction(case, found, tmp_path, capsys):
    _, alpha = disc(32, 40, 0)
    trimap = readers.make_trimap(alpha)
    if case == "127":
        trimap[trimap == 128] = 127
    elif case == "0/1/2":
        trimap = (trimap // 127).astype(np.uint8)
    elif case == "no unknown":
        trimap[trimap == 128] = 255
    path = composition1k(tmp_path, trimap, ".jpg" if case == "jpeg" else ".png")
    out = tmp_path / "eval"
    code = evaluate.main(["--split", "Composition-1K", "--matting", str(tmp_path), "--checkpoint",
                          str(tmp_path / "never-read.pt"), "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and str(path) in err, err
    assert f"found {found}" in err and "0, 128, 255" in err, err
    assert not out.exists()


def test_a_good_trimap_passes(tmp_path):
    _, alpha = disc(32, 40, 0)
    composition1k(tmp_path, readers.make_trimap(alpha))
    readers.check_pairs(readers.composition1k_pairs(tmp_path), matting=True, trimaps=True)


def test_alphas_of_any_depth_read_to_0_255(tmp_path):
    a = np.linspace(0, 1, 12 * 16).reshape(12, 16)
    expected = np.round(255 * a).astype(np.uint8)
    Image.fromarray(a.astype(np.float32), mode="F").save(tmp_path / "unit.tif")  # float in [0, 1]
    np.testing.assert_array_equal(readers.load_mask(tmp_path / "unit.tif"), expected)
    rounded = np.clip(a + np.where(a > 0.5, 0.005, -0.005), -0.005, 1.005)  # resampling's overshoot
    Image.fromarray(rounded.astype(np.float32), mode="F").save(tmp_path / "over.tif")
    np.testing.assert_array_equal(readers.load_mask(tmp_path / "over.tif"),
                                  np.round(255 * np.clip(rounded, 0, 1)).astype(np.uint8))
    Image.fromarray((255 * a).astype(np.float32), mode="F").save(tmp_path / "byte.tif")
    np.testing.assert_array_equal(readers.load_mask(tmp_path / "byte.tif"), expected)
    Image.fromarray(np.round(65535 * a).astype(np.uint16)).save(tmp_path / "16.png")
    np.testing.assert_array_equal(readers.load_mask(tmp_path / "16.png"), expected)
    for name, bad, shown in (("neg.tif", a - 0.5, "-0.5"), ("nan.tif", np.where(a > 0.5, np.nan, a),
                                                            "NaN"), ("big.tif", a * 1e6, "1e+06")):
        Image.fromarray(bad.astype(np.float32), mode="F").save(tmp_path / name)
        with pytest.raises(DataError) as e:
            readers.load_mask(tmp_path / name)
        one_line(e, str(tmp_path / name), shown)


def test_a_symbolic_link_to_nothing_is_named(tmp_path):
    own_tree(tmp_path / "own", masks=2, foregrounds=0)
    (tmp_path / "own" / "im" / "img_9.jpg").symlink_to(tmp_path / "gone" / "img_9.jpg")
    with pytest.raises(DataError) as e:
        readers.folder_sets(tmp_path / "own")
    one_line(e, str(tmp_path / "own" / "im"), "symbolic links to nothing", "img_9.jpg")


# ----------------------------------------------------------------------------------------------
# The folder reader
# ----------------------------------------------------------------------------------------------


def test_folder_layouts_and_the_seeded_held_out_split(tmp_path):
    sets = readers.folder_sets(own_tree(tmp_path / "own", masks=20, foregrounds=3))
    assert len(sets["masks"]) == 20 and sets["mattes"] == [] and len(sets["foregrounds"]) == 3
    training, held = readers.split_held_out(sets["masks"])
    assert len(held) == 2 and len(training) == 18 and not set(held) & set(training)
    # names only decide: the same split from a shuffled list, another with another seed
    shuffled = [sets["masks"][i] for i in np.random.default_rng(0).permutation(20)]
    assert readers.split_held_out(shuffled) == (training, held)
    assert readers.split_held_out(sets["masks"], seed=1)[1] != held
    assert readers.split_held_out(sets["masks"][:1]) == (sets["masks"][:1], [])
    natural = tmp_path / "natural"
    for i in range(2):
        image, alpha = disc(30, 30, i)
        save(image, natural / "im" / f"n_{i}.jpg")
        save(alpha, natural / "alpha" / f"n_{i}.png")
    assert [p[0].name for p in readers.folder_mattes(natural)] == ["n_0.jpg", "n_1.jpg"]
    with pytest.raises(DataError) as e:
        readers.folder_sets(tmp_path / "nothing")
    one_line(e, "nothing", "folder not found", "DIR/{im,gt}")


def test_own_folder_end_to_end_train_two_steps_then_evaluate(tmp_path, capsys):
    own = own_tree(tmp_path / "own")
    backgrounds = tmp_path / "backgrounds"
    for i in range(3):
        save(np.random.default_rng(50 + i).integers(0, 256, (30, 50, 3), dtype=np.uint8),
             backgrounds / f"bg_{i}.jpg")
    out = tmp_path / "run"
    argv = ["--model", "tiny", "--data", str(own), "--backgrounds", str(backgrounds), "--out",
            str(out), "--max-steps", "2", "--batch-size", "1", "--workers", "0", "--val-every",
            "2", "--log-every", "1", "--warmup-steps", "1", "--save-every", "2"]

    good = (backgrounds / "bg_1.jpg").read_bytes()
    (backgrounds / "bg_1.jpg").write_bytes(good[:100])  # a broken background: named before step 1
    assert train.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: 1 of 3 background images cannot be read") and "bg_1.jpg" in err
    assert not out.exists()
    (backgrounds / "bg_1.jpg").write_bytes(good)

    assert train.main(argv) == 0
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    validation = [r for r in records if "val_maxF" in r]
    assert len(validation) == 1 and {"val_SAD", "val_MSE", "val_MAE"} <= set(validation[0])

    test = tmp_path / "test"
    for i in range(2):
        image, alpha = disc(30, 36, 40 + i)
        save(image, test / "im" / f"t_{i}.jpg")
        save(alpha, test / "alpha" / f"t_{i}.png")
    for folder, split in ((test, "folder-mattes"), (own, "folder-masks")):
        dest = tmp_path / f"eval-{split}"
        assert evaluate.main(["--folder", str(folder), "--checkpoint", str(out / "sama.pt"),
                              "--out", str(dest), "--no-progress"]) == 0
        report = json.loads((dest / "metrics.json").read_text())
        assert report["split"] == split and report["scores"]["n"] == (2 if folder == test else 5)


# ----------------------------------------------------------------------------------------------
# File names that are not UTF-8
# ----------------------------------------------------------------------------------------------

NOT_UTF8 = os.fsdecode(b"\xff\xfe")  # a name's bytes as Python holds them (surrogateescape)


@pytest.mark.skipif(sys.platform == "darwin", reason="APFS refuses names that are not UTF-8")
def test_file_names_that_are_not_utf8_work_end_to_end(tmp_path, capsys):
    own = own_tree(tmp_path / "own", masks=3, foregrounds=0)
    for folder, ext in (("im", ".jpg"), ("gt", ".png")):
        (own / folder / f"img_0{ext}").rename(own / folder / f"{NOT_UTF8}{ext}")
    assert readers.main(["check", "folder-masks", str(own)]) == 0
    pairs = readers.folder_masks(own)
    assert [p[1].name for p in readers.split_held_out(pairs)[1]] != []
    # the name counts in the digest, as its bytes
    renamed = tmp_path / "renamed"
    shutil.copytree(own, renamed)
    for folder, ext in (("im", ".jpg"), ("gt", ".png")):
        (renamed / folder / f"{NOT_UTF8}{ext}").rename(renamed / folder / f"img_9{ext}")
    digest = outputs.files_digest(f for pair in pairs for f in pair)
    assert digest != outputs.files_digest(f for pair in readers.folder_masks(renamed) for f in pair)

    out = tmp_path / "eval"
    for resume in ([], ["--resume"]):
        assert evaluate.main(["--folder", str(own), "--checkpoint", str(SAMA_PT),
                              "--sam-checkpoint", str(SAM_PTH), "--out", str(out),
                              "--no-progress", *resume]) == 0
    assert (out / "pred" / f"{NOT_UTF8}.png").is_file()
    assert NOT_UTF8 in json.loads((out / "per_image.json").read_text())["stems"]
    assert train.main(["--model", "tiny", "--tasks", "seg", "--data", str(own), "--out",
                       str(tmp_path / "run"), "--max-steps", "1", "--batch-size", "1", "--workers",
                       "0", "--val-every", "1", "--warmup-steps", "1"]) == 0


@pytest.mark.skipif(sys.platform == "darwin", reason="APFS refuses names that are not UTF-8")
def test_a_folder_name_that_is_not_utf8_is_printed_as_its_bytes(tmp_path):
    own = own_tree(tmp_path / f"own{NOT_UTF8}", masks=2, foregrounds=0)
    # a UTF-8 locale's stdout is strict; the C locale's takes any name already
    done = subprocess.run([sys.executable, str(ROOT / "readers.py"), "check", "folder-masks",
                           str(own)], capture_output=True,
                          env={**os.environ, "PYTHONIOENCODING": "utf-8:strict"})
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert os.fsencode(own) in done.stdout
