"""The readers of Table 2's Distinctions-646 and Table 5's RefMatte-RW100 on small trees in their
official layouts: Distinctions-646's test set composited once like Composition-1K over the
backgrounds its own list names, in the list's order (pairing, Adobe's rule, derived trimaps, all or
nothing, stale and partial composites refused), its training list's COCO 2014 names,
RefMatte-RW100's image / mask / label tree and its image_name fallback, their one-line errors, and
evaluate.py end to end on both (D-646 on the whole image and the unknown band, RW100 prompted with
the box of alpha > 127)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import data
import evaluate
import readers
import scoring
from load_sam_weights import load_sam, sam_identity, save_sama
from metrics import MattingMetrics
from readers import DataError
from sam import SAM_VARIANTS, Sam
from sama import SAMA, TASKS

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.torch_threads

FG_SIZES = [(40, 56), (48, 36)]  # (h, w) of the test foregrounds
N_BG = 43  # VOC images; 2 foregrounds x 20 are listed in bg_test.txt, 3 are not


def save(array: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def matte(h: int, w: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A textured foreground (h, w, 3) and the alpha of a soft-edged disc (h, w): 255 inside, 0
    outside, a 4-pixel ramp between."""
    rng = np.random.default_rng(seed)
    fg = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    y, x = np.mgrid[0:h, 0:w]
    d = np.hypot(y - h / 2, x - w / 2)
    alpha = np.clip((0.35 * min(h, w) - d) / 4 + 0.5, 0, 1)
    return fg, np.round(255 * alpha).astype(np.uint8)


def write_d646(root: Path) -> tuple[Path, Path]:
    """Distinctions-646/Test/{FG, GT, bg_test.txt} with two foregrounds, and a VOC folder of N_BG
    backgrounds, some smaller than the foregrounds (upscaled by the composition), some larger. The
    list names 40 of them in an order of its own, as the archive's does (CRLF line ends, no final
    newline); the 3 unlisted ones sit among the listed in name order, so that the first 40 files
    by name are another set, in another order."""
    d646 = root / "Distinctions-646"
    for k, (h, w) in enumerate(FG_SIZES):
        fg, alpha = matte(h, w, seed=k)
        save(fg, d646 / "Test" / "FG" / f"fg_{k}.png")
        save(alpha, d646 / "Test" / "GT" / f"fg_{k}.png")
    rng = np.random.default_rng(7)
    names = [f"2008_{i:06d}.jpg" for i in range(N_BG)]
    for i, name in enumerate(names):
        h, w = (24, 30) if i % 3 == 0 else (64, 80)
        save(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), root / "VOC" / name)
    listed = [names[(i * 17) % N_BG] for i in range(N_BG) if (i * 17) % N_BG not in (0, 5, 30)]
    (d646 / "Test" / readers.D646_TEST_LIST).write_bytes("\r\n".join(listed).encode())
    return d646, root / "VOC"


def listed(root: Path) -> list[str]:
    return (root / "Test" / readers.D646_TEST_LIST).read_bytes().decode().split("\r\n")


@pytest.fixture
def d646(tmp_path) -> tuple[Path, Path]:
    return write_d646(tmp_path)


def one_line(error: pytest.ExceptionInfo, *fragments: str) -> str:
    msg = str(error.value)
    assert "\n" not in msg, msg
    for fragment in fragments:
        assert fragment in msg, f"{fragment!r} not in {msg!r}"
    return msg


# ----------------------------------------------------------------------------------------------
# Distinctions-646: composited once, as Composition-1K is distributed
# ----------------------------------------------------------------------------------------------


def test_d646_composite_uses_the_listed_backgrounds_in_list_order_by_adobes_rule(d646):
    root, voc = d646
    names = listed(root)
    assert len(names) == 2 * readers.D646_PER_FG and names != sorted(names)
    assert [p.name for p in sorted(voc.iterdir())][:len(names)] != sorted(names)
    triples = readers.d646_test_triples(root, voc)
    composite = root / "Test" / "composite"
    assert len(triples) == 2 * readers.D646_PER_FG
    assert sorted(p.name for p in (root / "Test").iterdir()) == ["FG", "GT", "bg_test.txt",
                                                                  "composite"]
    backgrounds = [voc / name for name in names]
    for merged, alpha_copy, trimap in triples:
        stem, i = merged.stem.rsplit("_", 1)
        k, i = int(stem[-1]), int(i)
        fg = readers.load_image(root / "Test" / "FG" / f"{stem}.png")
        alpha = readers.load_mask(root / "Test" / "GT" / f"{stem}.png")
        assert merged.parent == composite / "merged"
        assert alpha_copy.name == trimap.name == merged.name
        bg = readers.load_image(backgrounds[k * readers.D646_PER_FG + i])  # foreground k: 20 k + i
        np.testing.assert_array_equal(readers.load_image(merged), readers.composite(fg, alpha, bg))
        np.testing.assert_array_equal(readers.load_mask(alpha_copy), alpha)
        expected_trimap = readers.make_trimap(alpha, readers.D646_TRIMAP_RADIUS)
        np.testing.assert_array_equal(readers.load_mask(trimap), expected_trimap)
        assert (expected_trimap == 128).any() and (expected_trimap == 0).any()
    manifest = json.loads((composite / "manifest.json").read_text())
    assert [name for name, _ in manifest["backgrounds"]] == names == manifest["list"]

    # written once: later calls, with the same backgrounds or none, read it as it is
    stamps = {p: p.stat().st_mtime_ns for p in composite.rglob("*")}
    assert readers.d646_test_triples(root) == triples
    assert readers.d646_test_triples(root.parent, voc) == triples  # the folder holding it works too
    assert {p: p.stat().st_mtime_ns for p in composite.rglob("*")} == stamps


def test_d646_stale_or_partial_composite_is_refused(d646):
    root, voc = d646
    triples = readers.d646_test_triples(root, voc)
    composite = root / "Test" / "composite"
    again = "delete it to composite again"

    gt = root / "Test" / "GT" / "fg_1.png"
    original = gt.read_bytes()
    alpha = readers.load_mask(gt)
    save(np.where(alpha > 0, 255, 0).astype(np.uint8), gt)  # another alpha for the same foreground
    with pytest.raises(DataError) as e:
        readers.d646_test_triples(root)
    one_line(e, str(composite), "stale", again)
    gt.write_bytes(original)

    used = voc / listed(root)[5]
    used.write_bytes((voc / listed(root)[6]).read_bytes())  # other pixels under a used name
    with pytest.raises(DataError) as e:
        readers.d646_test_triples(root, voc)
    one_line(e, str(composite), "stale", "other files than the backgrounds", str(voc))
    assert readers.d646_test_triples(root) == triples  # without backgrounds: used as it is

    listing = root / "Test" / readers.D646_TEST_LIST
    names = listed(root)
    listing.write_text("\n".join(names[1:] + names[:1]) + "\n")  # another order: another test set
    with pytest.raises(DataError) as e:
        readers.d646_test_triples(root)
    one_line(e, str(composite), "stale", "bg_test.txt", again)
    listing.write_text("\n".join(names) + "\n")  # LF and a final newline: the same list
    assert readers.d646_test_triples(root) == triples

    triples[3][0].unlink()
    with pytest.raises(DataError) as e:
        readers.d646_test_triples(root)
    one_line(e, str(composite), "partial composite", f"merged/{triples[3][0].name} missing", again)
    shutil.copyfile(triples[4][0], triples[3][0])
    triples[7][2].unlink()
    with pytest.raises(DataError) as e:
        readers.d646_test_triples(root)
    one_line(e, "partial composite", f"trimaps/{triples[7][2].name} missing")
    shutil.copyfile(triples[4][2], triples[7][2])
    for name in readers.D646_FOLDERS:  # an image no foreground made
        shutil.copyfile(triples[0][0], composite / name / "stray_0.png")
    with pytest.raises(DataError) as e:
        readers.d646_test_triples(root)
    one_line(e, str(composite), f"holds {len(triples) + 1} images", again)
    (composite / "manifest.json").unlink()
    with pytest.raises(DataError) as e:
        readers.d646_test_triples(root)
    one_line(e, str(composite), "manifest.json", again)


def test_d646_composite_is_all_or_nothing(d646, monkeypatch):
    root, voc = d646
    names = listed(root)
    bad, worse = voc / names[2 * readers.D646_PER_FG - 3], voc / names[4]
    good, fine = bad.read_bytes(), worse.read_bytes()
    bad.write_bytes(good[: len(good) // 3])  # truncated
    worse.write_bytes(b"not an image")
    with pytest.raises(DataError) as e:
        readers.d646_test_triples(root, voc)
    one_line(e, "2 of 40 background images cannot be read", str(bad), str(worse))
    assert not (root / "Test" / "composite").exists()  # named before any compositing
    worse.write_bytes(fine)
    monkeypatch.setattr(readers, "check_backgrounds", lambda paths: None)  # found while compositing
    with pytest.raises(DataError) as e:
        readers.d646_test_triples(root, voc)
    one_line(e, str(bad), "cannot read image")
    assert sorted(p.name for p in (root / "Test").iterdir()) == ["FG", "GT", "bg_test.txt"]
    bad.write_bytes(good)
    assert len(readers.d646_test_triples(root, voc)) == 2 * readers.D646_PER_FG


def test_d646_broken_trees_are_one_line(d646, tmp_path):
    root, voc = d646
    with pytest.raises(DataError) as e:
        readers.d646_test_triples(root)
    one_line(e, str(root / "Test" / "composite"), "not composited yet", "background")
    few = tmp_path / "few"
    shutil.copytree(voc, few)
    names = listed(root)
    for name in (names[7], names[3]):
        (few / name).unlink()
    with pytest.raises(DataError) as e:
        readers.d646_test_triples(root, few)
    one_line(e, str(few), "2 of the 40 backgrounds listed in", f"(first: {names[3]})")
    (few / names[3]).symlink_to(tmp_path / "nowhere.jpg")  # a link to nothing is named
    with pytest.raises(DataError) as e:
        readers.image_files(few)
    one_line(e, str(few), "symbolic links to nothing", names[3], "nowhere.jpg")

    listing = root / "Test" / readers.D646_TEST_LIST
    listing.write_text("\r\n".join(names[:-1]))
    with pytest.raises(DataError) as e:
        readers.d646_test_triples(root, voc)
    one_line(e, str(listing), f"{len(names) - 1} names", f"need {len(names)}")
    listing.write_text("\r\n".join(names))

    fg = root / "Test" / "FG" / "fg_0.png"
    save(np.zeros((10, 12, 3), np.uint8), fg)  # the foreground no longer fits its alpha
    with pytest.raises(DataError) as e:
        readers.d646_test_triples(root, voc)
    one_line(e, "fg_0.png", "differs from", str(fg))
    assert not (root / "Test" / "composite").exists()
    shutil.rmtree(root / "Test" / "GT")
    with pytest.raises(DataError) as e:
        readers.d646_test_pairs(root)
    one_line(e, str(root), "no Test/GT folder", "Distinctions-646/Test/{FG,GT}")


# ----------------------------------------------------------------------------------------------
# RefMatte-RW100: {image_all, mask} + refmatte_rw100_label.json
# ----------------------------------------------------------------------------------------------

REFMATTE_STEMS = ["photo_1_0", "photo_1_1", "photo_2_0"]  # two objects of photo_1, one of photo_2


def write_refmatte(root: Path) -> Path:
    """RefMatte_RW_100 as distributed: one image per labelled object in image_all, its alpha in
    mask, and the labels keyed by the same stems."""
    rw = root / "RefMatte_RW_100"
    labels = {}
    for k, stem in enumerate(REFMATTE_STEMS):
        fg, alpha = matte(44, 60, seed=10 + k)
        background = np.random.default_rng(20 + k).integers(0, 256, fg.shape, dtype=np.uint8)
        save(readers.composite(fg, alpha, background), rw / "image_all" / f"{stem}.jpg")
        save(alpha, rw / "mask" / f"{stem}.png")
        labels[stem] = {"image_name": stem.rsplit("_", 1)[0], "expressions": [f"object number {k}"]}
    (rw / readers.REFMATTE_LABELS).write_text(json.dumps(labels))
    return rw


def test_refmatte_reader(tmp_path):
    rw = write_refmatte(tmp_path)
    pairs = readers.refmatte_rw100_pairs(rw)
    names = [(image.name, mask.name) for image, mask in pairs]
    assert names == [(f"{s}.jpg", f"{s}.png") for s in REFMATTE_STEMS]
    assert readers.refmatte_rw100_pairs(tmp_path) == pairs  # the folder holding it works too
    assert readers.main(["check", "RefMatte-RW100", str(rw)]) == 0


@pytest.mark.parametrize("breakage", ["no labels", "not json", "a list", "missing entry",
                                      "extra entry", "missing mask"])
def test_refmatte_broken_tree_is_one_line(tmp_path, breakage):
    rw = write_refmatte(tmp_path)
    labels_path = rw / readers.REFMATTE_LABELS
    labels = json.loads(labels_path.read_text())
    if breakage == "no labels":
        labels_path.unlink()
        fragments = (str(rw), readers.REFMATTE_LABELS, "RefMatte_RW_100/{image_all,mask,")
    elif breakage == "not json":
        labels_path.write_text('{"photo_1_0": ')
        fragments = (str(labels_path), "not readable JSON")
    elif breakage == "a list":
        labels_path.write_text(json.dumps(list(labels)))
        fragments = (str(labels_path), "JSON list")
    elif breakage == "missing entry":
        del labels["photo_1_1"]
        labels_path.write_text(json.dumps(labels))
        fragments = (str(rw / "mask" / "photo_1_1.png"), "no entry 'photo_1_1'")
    elif breakage == "extra entry":
        labels["photo_3_0"] = {"image_name": "photo_3", "expressions": ["a third one"]}
        labels_path.write_text(json.dumps(labels))
        fragments = (str(labels_path), "'photo_3_0'", "no image_all / mask pair")
    else:
        (rw / "mask" / "photo_2_0.png").unlink()
        fragments = ("photo_2_0.jpg", "no file named photo_2_0.*", "mask")
    with pytest.raises(DataError) as e:
        readers.refmatte_rw100_pairs(rw)
    one_line(e, *fragments)


# ----------------------------------------------------------------------------------------------
# evaluate.py end to end on both (a random tiny SAMA)
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    sam_path, sama_path = folder / "sam_tiny.pth", folder / "sama.pt"
    torch.save(Sam(SAM_VARIANTS["tiny"]).state_dict(), sam_path)
    save_sama(SAMA(load_sam(sam_path)), sama_path, sam_identity(sam_path, "tiny"), TASKS)
    return sama_path


def run(*argv) -> int:
    return evaluate.main([*map(str, argv), "--no-progress"])


def test_evaluate_distinctions_646_end_to_end(d646, checkpoint, tmp_path, capsys):
    root, voc = d646
    out = tmp_path / "eval"
    common = ("--split", "Distinctions-646", "--d646", root, "--checkpoint", checkpoint,
              "--out", out, "--limit", 3)
    assert run(*common) == 2  # not composited yet, and no backgrounds given
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "not composited yet" in err
    assert run(*common, "--backgrounds", voc) == 0
    triples = readers.d646_test_triples(root)[:3]
    whole, band = MattingMetrics(), MattingMetrics()
    for _, alpha_path, trimap_path in triples:
        pred = readers.load_mask(out / "pred" / f"{alpha_path.stem}.png")
        whole.update(pred, readers.load_mask(alpha_path))
        band.update(pred, readers.load_mask(alpha_path), readers.load_mask(trimap_path))
    report = json.loads((out / "metrics.json").read_text())
    second = {f"{k}_unknown": v for k, v in band.results().items() if k != "n"}
    assert report["scores"] == {**whole.results(), **second}
    assert report["scores"]["region"] == "whole image"
    assert report["scores"]["region_unknown"].startswith("unknown")
    md = (out / "results.md").read_text()
    assert "Region: whole image" in md and "make_trimap(alpha, 5)" in md
    assert "| SAD | MSE | Grad | Conn | SAD_unknown | MSE_unknown |" in md
    rows = [line for line in md.splitlines() if line.startswith("| paper:")]
    assert len(rows) == 1
    row = rows[0]
    assert "paper: SAMA (same configuration as ours)" in row and "22.4" in row and "2.2" in row


def test_evaluate_refmatte_rw100_end_to_end(checkpoint, tmp_path):
    rw = write_refmatte(tmp_path)
    out = tmp_path / "eval"
    assert run("--split", "RefMatte-RW100", "--refmatte", rw, "--checkpoint", checkpoint,
               "--out", out) == 0
    direct = MattingMetrics()
    for _, alpha_path in readers.refmatte_rw100_pairs(rw):
        pred = readers.load_mask(out / "pred" / f"{alpha_path.stem}.png")
        direct.update(pred, readers.load_mask(alpha_path))
    report = json.loads((out / "metrics.json").read_text())
    assert report["scores"] == direct.results() and report["scores"]["region"] == "whole image"
    assert report["scores"]["n"] == len(REFMATTE_STEMS) and "alpha > 127" in report["prompt"]
    md = (out / "results.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| paper:") and "Table 5" in line]
    assert len(rows) == 3
    expected = {"segmentation only": ("62.7", "54"), "matting only": ("34.25", "21"),
                "both tasks": ("25.69", "10")}
    for words, (sad, mse) in expected.items():
        row = next(r for r in rows if words in r)
        assert f"| {sad} | {mse} |" in row, row
    marked = [r for r in rows if "(same configuration as ours)" in r]
    assert len(marked) == 1 and "both tasks" in marked[0]
    assert "box of its alpha" in md and "whole image" in md


def test_d646_whole_image_and_band_scores_by_hand(tmp_path):
    """A 4 x 6 alpha, its prediction off by 51 at one pixel outside the band and one inside:
    SAD whole = (51 + 51) / 255 / 1000, band = 51 / 255 / 1000; MSE x1e3 over 24 and 6 pixels."""
    gt = np.zeros((4, 6), np.uint8)
    gt[1:3, 1:4] = 255
    pred = gt.copy()
    pred[0, 5], pred[1, 1] = 51, 204
    trimap = np.zeros((4, 6), np.uint8)
    trimap[1:3, 1:4] = 128  # six unknown pixels
    out = tmp_path / "eval"
    files = (save(np.zeros((4, 6, 3), np.uint8), tmp_path / "merged" / "a_0.png"),
             save(gt, tmp_path / "alpha" / "a_0.png"),
             save(trimap, tmp_path / "trimap" / "a_0.png"))
    save(pred, out / "pred" / "a_0.png")  # the written prediction, scored as --resume reads it
    scores, per_image = scoring.score_split("Distinctions-646", evaluate.SPLITS["Distinctions-646"],
                                            [files], out, None, resume=True, progress=False)
    assert scores["SAD"] == pytest.approx(0.0004) and scores["SAD_unknown"] == pytest.approx(0.0002)
    assert per_image["SAD"] == [scores["SAD"]]
    assert per_image["SAD_unknown"] == [scores["SAD_unknown"]]
    assert scores["MSE"] == pytest.approx(2 * 0.2 ** 2 / 24 * 1e3)
    assert scores["MSE_unknown"] == pytest.approx(0.2 ** 2 / 6 * 1e3)


def test_name_lists_crlf_without_final_newline(tmp_path):
    for i, raw in enumerate([b"a.jpg\r\nb.jpg\r\nc.jpg", b"a.jpg\nb.jpg\nc.jpg\n",
                             b"\xef\xbb\xbfa.jpg \r\n\r\nb.jpg\r\nc.jpg\r\n"]):
        (tmp_path / f"{i}.txt").write_bytes(raw)
        assert readers.read_name_list(tmp_path / f"{i}.txt") == ["a.jpg", "b.jpg", "c.jpg"]


def test_d646_training_list_of_coco_2014_names_found_in_train2017(tmp_path):
    d646 = tmp_path / "Distinctions-646"
    for k in range(2):
        fg, alpha = matte(20, 24, seed=30 + k)
        save(fg, d646 / "Train" / "FG" / f"t_{k}.png")
        save(alpha, d646 / "Train" / "GT" / f"t_{k}.png")
    ids = [9, 25, 30, 34, 36, 42]
    names = [f"COCO_train2014_{i:012d}.jpg" for i in ids]  # three per foreground
    (d646 / "Train" / readers.D646_TRAIN_LIST).write_bytes("\r\n".join(names).encode())
    coco = tmp_path / "train2017"
    coco.mkdir()
    for i in ids + [1, 12]:  # two images the list does not name; PNG data: exact pixel values
        Image.fromarray(np.full((30, 30, 3), i, np.uint8)).save(coco / f"{i:012d}.jpg", "PNG")
    triples = readers.d646_train_pairs(tmp_path, coco)
    assert [(fg.name, bgs) for fg, _, bgs in triples] == [
        ("t_0.png", tuple(coco / f"{i:012d}.jpg" for i in ids[:3])),
        ("t_1.png", tuple(coco / f"{i:012d}.jpg" for i in ids[3:]))]
    # each foreground is composited over its own listed backgrounds only
    ds = data.MattingDataset(triples, [], [], 64, augment=False, seed=0)
    for k, (_, _, bgs) in enumerate(triples):
        seen = {int(ds._background(20, 24, np.random.default_rng([0, e, k]), bgs)[0, 0, 0])
                for e in range(12)}
        assert seen <= set(ids[3 * k:3 * k + 3]) and len(seen) > 1
    (coco / f"{ids[4]:012d}.jpg").unlink()
    (coco / f"{ids[1]:012d}.jpg").unlink()
    with pytest.raises(DataError) as e:
        readers.d646_train_pairs(tmp_path, coco)
    one_line(e, str(coco), "2 of the 6 backgrounds listed", f"(first: {names[1]})")


class BoxRecorder:
    """A predictor that records the box it is given and answers with the GT's mean alpha."""

    def __init__(self):
        self.boxes = []

    def set_image(self, image):
        self.shape = image.shape[:2]

    def predict(self, points=None, labels=None, box=None):
        self.boxes.append(box)
        return {"alpha": np.full(self.shape, 0.5, np.float32)}


def test_refmatte_prompt_is_the_box_of_alpha_above_127(tmp_path):
    rw = write_refmatte(tmp_path)
    for _, mask in readers.refmatte_rw100_pairs(rw):
        alpha = readers.load_mask(mask).copy()
        alpha[0, :3] = 40  # a faint wisp far from the object: inside alpha > 0's box only
        save(alpha, mask)
    recorder = BoxRecorder()
    scoring.score_split("RefMatte-RW100", evaluate.SPLITS["RefMatte-RW100"],
                        readers.refmatte_rw100_pairs(rw), tmp_path / "eval", recorder, resume=False,
                        progress=False)
    for box, (_, mask) in zip(recorder.boxes, readers.refmatte_rw100_pairs(rw)):
        alpha = readers.load_mask(mask)
        np.testing.assert_array_equal(box, data.mask_to_box(alpha > 127))
        assert box[0] > 0 and box[1] > 0  # not the box of alpha > 0, which starts at (0, 0)


def test_refmatte_image_falls_back_to_the_labels_image_name(tmp_path):
    rw = write_refmatte(tmp_path)
    (rw / "image_all" / "photo_1_1.jpg").rename(rw / "image_all" / "photo_1.jpg")
    (rw / "image_all" / "photo_2_0.jpg").rename(rw / "image_all" / "scene_2.jpg")
    labels = json.loads((rw / readers.REFMATTE_LABELS).read_text())
    labels["photo_2_0"]["image_name"] = "scene_2.jpg"  # a file name, or a stem (photo_1)
    (rw / readers.REFMATTE_LABELS).write_text(json.dumps(labels))
    pairs = readers.refmatte_rw100_pairs(rw)
    assert [(image.name, mask.name) for image, mask in pairs] == [
        ("photo_1_0.jpg", "photo_1_0.png"), ("photo_1.jpg", "photo_1_1.png"),
        ("scene_2.jpg", "photo_2_0.png")]
    labels["photo_2_0"]["image_name"] = "elsewhere.jpg"
    (rw / readers.REFMATTE_LABELS).write_text(json.dumps(labels))
    with pytest.raises(DataError) as e:
        readers.refmatte_rw100_pairs(rw)
    one_line(e, str(rw / "mask" / "photo_2_0.png"), "'elsewhere.jpg'")
