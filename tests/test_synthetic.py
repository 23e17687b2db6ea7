"""Tests for synthetic.py: corpus samples are pure functions of (seed, i) with prompts true to their
mask; the benchmark is deterministic, read by the official readers, and its splits are disjoint."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import backgrounds
from scipy import ndimage

import data
import readers
from miniature import synthetic

SMALL = {name: 3 for name in synthetic.COUNTS}  # images per split in the tests' benchmarks
SMALL["matting/test-fg"] = 2  # x COMP_BACKGROUNDS composites
SMALL["heldout/test-fg"] = 2
SMALL["matting/train-fg"] = 4  # one in four goes to "Other"


def write_small(root: Path, seed: int) -> Path:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(synthetic, "COUNTS", SMALL)
        synthetic.write_benchmark(root, seed)
    return root


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    return write_small(tmp_path_factory.mktemp("bench") / "b", seed=0)


def files(root: Path) -> dict[str, bytes]:
    paths = [p for p in sorted(root.rglob("*")) if p.is_file()]
    return {str(p.relative_to(root)): p.read_bytes() for p in paths}


def eroded_away(mask: np.ndarray) -> float:
    """The fraction of a mask's pixels a 2 px erosion removes (thin parts: all of them)."""
    return 1 - ndimage.binary_erosion(mask, iterations=2).sum() / mask.sum()


def same_sample(a: dict, b: dict) -> bool:
    if not np.array_equal(a["image"], b["image"]) or len(a["targets"]) != len(b["targets"]):
        return False
    return all(np.array_equal(s[k], t[k]) for s, t in zip(a["targets"], b["targets"]) for k in s)


# ----------------------------------------------------------------------------------------------
# The corpus
# ----------------------------------------------------------------------------------------------


def test_corpus_samples_are_pure_functions_of_seed_and_index():
    first = synthetic.corpus_sample(0, 5, n_targets=3)
    synthetic.corpus_sample(0, 6, n_targets=2)  # other samples drawn in between change nothing
    synthetic.corpus_sample(3, 5)
    assert same_sample(first, synthetic.corpus_sample(0, 5, n_targets=3))
    # asking for fewer targets gives the same image and the same first target
    one = synthetic.corpus_sample(0, 5, n_targets=1)
    assert same_sample(one, {"image": first["image"], "targets": first["targets"][:1]})
    # the seed matters, and so does i
    assert not np.array_equal(first["image"], synthetic.corpus_sample(1, 5)["image"])
    assert not np.array_equal(first["image"], synthetic.corpus_sample(0, 4)["image"])


def test_corpus_prompts_are_true_to_their_target():
    for i in range(8):
        sample = synthetic.corpus_sample(0, i, n_targets=5)
        image = sample["image"]
        h, w = image.shape[:2]
        assert image.dtype == np.uint8 and image.shape == (h, w, 3)
        assert synthetic.SIZE_RANGE[0] <= min(h, w) and max(h, w) <= synthetic.SIZE_RANGE[1]
        taken = np.zeros((h, w), bool)
        for t in sample["targets"]:
            mask = t["mask"]
            assert mask.dtype == bool and mask.shape == (h, w) and mask.sum() >= 64
            assert not (mask & taken).any()  # distinct objects: visible parts never overlap
            taken |= mask
            tight = data.mask_to_box(mask)
            cap = synthetic.BOX_NOISE_MAX * max(h, w)
            assert np.all(np.abs(t["box"] - tight) <= cap + 1e-4)  # SAM's box noise, capped
            x0, y0, x1, y1 = t["box"]
            assert 0 <= x0 <= x1 <= w - 1 and 0 <= y0 <= y1 <= h - 1
            x, y = t["points"].astype(int).T
            assert t["point_labels"][0] == 1  # the first click is positive
            # positives inside, negatives outside
            assert np.array_equal(mask[y, x], t["point_labels"] == 1)
            assert t["mask_input"].shape == (h, w) and t["mask_input"].dtype == bool


# ----------------------------------------------------------------------------------------------
# The benchmark
# ----------------------------------------------------------------------------------------------


def test_benchmark_is_deterministic_and_in_the_official_layouts(bench, tmp_path):
    again = write_small(tmp_path / "again", seed=0)
    assert files(again) == files(bench)  # same seed, same bytes, file for file
    other = write_small(tmp_path / "other", seed=1)
    assert files(other).keys() == files(bench).keys() and files(other) != files(bench)

    n = SMALL
    segmentation = [(bench / "DIS5K", "DIS-TR", n["DIS-TR"]),
                    (bench / "DIS5K", "DIS-VD", n["DIS-VD"]),
                    (bench / "DIS5K", "DIS-TE1", n["DIS-TE1"]),
                    (bench / "solid" / "DIS5K", "DIS-VD", n["solid/DIS-VD"]),
                    (bench / "solid" / "DIS5K", "DIS-TE1", n["solid/DIS-TE1"]),
                    (bench / "heldout" / "DIS5K", "DIS-TE1", n["heldout/DIS-TE1"])]
    for root, split, count in segmentation:
        pairs = readers.dis_pairs(root, split)
        assert len(pairs) == count
        readers.check_pairs(pairs, workers=1)
    matting = [(readers.aim_train_pairs(bench / "AIM"), n["matting/train-fg"]),
               (readers.composition1k_pairs(bench / "AIM"),
                n["matting/test-fg"] * synthetic.COMP_BACKGROUNDS),
               (readers.am2k_pairs(bench / "AM-2K"), n["matting/val-fg"]),
               (readers.composition1k_pairs(bench / "heldout" / "AIM"),
                n["heldout/test-fg"] * synthetic.COMP_BACKGROUNDS)]
    for pairs, count in matting:
        assert len(pairs) == count
        readers.check_pairs(pairs, matting=True, workers=1)
    assert len(readers.image_files(bench / "backgrounds")) == n["matting/backgrounds"]
    # the manifest's counts are the files' (a folder of fg and alpha, or of im and gt, or images)
    manifest = json.loads((bench / "manifest.json").read_text())
    assert set(manifest["splits"]) == set(synthetic.STREAMS) - {"corpus"}
    for name, split in manifest["splits"].items():
        folder = bench / split["folder"]
        found = (len(readers.aim_train_pairs(bench / "AIM")) if name == "matting/train-fg"
                 else len(readers.image_files(folder / "original")) if name == "matting/val-fg"
                 else len(readers.image_files(folder / "im")) if (folder / "im").is_dir()
                 else len(readers.image_files(folder)))
        assert split["count"] == found, name


def test_benchmark_splits_are_disjoint(bench):
    manifest = json.loads((bench / "manifest.json").read_text())
    streams = [s["stream"] for s in manifest["splits"].values()]
    assert len(set(streams)) == len(streams) and synthetic.STREAMS["corpus"] not in streams
    assert manifest["thin_structure_test_split"] == "DIS5K/DIS-TE1"
    # no image appears in two splits (images only: masks of simple shapes could repeat)
    image_dirs = ["DIS5K/DIS-TR/im", "DIS5K/DIS-VD/im", "DIS5K/DIS-TE1/im", "solid/DIS5K/DIS-VD/im",
                  "solid/DIS5K/DIS-TE1/im", "heldout/DIS5K/DIS-TE1/im",
                  f"{synthetic.HELDOUT_COMP}/fg", f"{synthetic.HELDOUT_COMP}/merged",
                  "AIM/Combined_Dataset/Training_set/Adobe-licensed images/fg",
                  "AIM/Combined_Dataset/Training_set/Other/fg",
                  "AIM/Combined_Dataset/Test_set/Adobe-licensed images/fg",
                  "AIM/Combined_Dataset/Test_set/Adobe-licensed images/merged",
                  "AM-2K/validation/original",
                  "backgrounds"]
    seen = {}
    for folder in image_dirs:
        for path in readers.image_files(bench / folder):
            digest = hashlib.sha256(readers.load_image(path).tobytes()).hexdigest()
            assert digest not in seen, f"{path} repeats {seen.get(digest)}"
            seen[digest] = path
    # a corpus sample never equals a benchmark image of the same seed and index
    for i in range(3):
        image = synthetic.corpus_sample(0, i)["image"]
        assert hashlib.sha256(image.tobytes()).hexdigest() not in seen


def test_pairs_in_memory_equal_the_files(bench):
    image, gt = synthetic.solid_pair(0, "DIS-TE1", 2)
    solid = bench / "solid/DIS5K/DIS-TE1"
    assert np.array_equal(readers.load_image(solid / "im/DIS-TE1_0002.jpg"), image)
    assert np.array_equal(readers.load_mask(bench / "solid/DIS5K/DIS-TE1/gt/DIS-TE1_0002.png"), gt)
    image, gt = synthetic.thin_pair(0, "DIS-VD", 1)
    assert np.array_equal(readers.load_image(bench / "DIS5K/DIS-VD/im/DIS-VD_0001.jpg"), image)
    assert np.array_equal(readers.load_mask(bench / "DIS5K/DIS-VD/gt/DIS-VD_0001.png"), gt)


def test_composition_follows_eq_1(bench):
    test = bench / "AIM/Combined_Dataset/Test_set/Adobe-licensed images"
    fg, alpha = synthetic.matte_fg(0, "matting/test-fg", 1)
    bg = synthetic.background_image(0, "matting/test-bg", 1 * synthetic.COMP_BACKGROUNDS + 2)
    merged = readers.load_image(test / "merged" / "test_0001_2.png")
    assert np.array_equal(merged, readers.composite(fg, alpha, bg))
    assert np.array_equal(readers.load_mask(test / "alpha_copy" / "test_0001_2.png"), alpha)
    trimap = readers.load_mask(test / "trimaps" / "test_0001_2.png")
    assert np.array_equal(trimap, readers.make_trimap(alpha))


def test_the_held_out_kinds_are_drawn_by_their_splits_only(tmp_path, monkeypatch):
    """No training, validation or other test split draws a held-out kind: the kinds are disjoint by
    construction, and while a whole benchmark is written the held-out kinds' drawing functions run
    exactly once per image of the held-out splits (a spy counts them)."""
    assert not set(synthetic.THIN_KINDS) & set(synthetic.HELDOUT_THIN_KINDS)
    assert not set(synthetic.MATTE_KINDS) & set(synthetic.HELDOUT_MATTE_KINDS)
    for stream in ("DIS-TR", "DIS-VD", "DIS-TE1"):
        drawn = {synthetic.thin_kind(stream, i) for i in range(synthetic.COUNTS[stream])}
        assert drawn == set(synthetic.THIN_KINDS)  # every kind, in every split
    for stream in ("matting/train-fg", "matting/val-fg", "matting/test-fg"):
        drawn = {synthetic.matte_kind(stream, i) for i in range(synthetic.COUNTS[stream])}
        assert drawn == set(synthetic.MATTE_KINDS)
    calls = {"truss": 0, "animal": 0}

    def spy(kind, draw):
        def counted(*args):
            calls[kind] += 1
            return draw(*args)
        return counted

    monkeypatch.setitem(synthetic.HELDOUT_THIN_KINDS, "truss",
                        spy("truss", synthetic.HELDOUT_THIN_KINDS["truss"]))
    monkeypatch.setitem(synthetic.DRAWN_MATTES, "animal",
                        spy("animal", synthetic.DRAWN_MATTES["animal"]))
    write_small(tmp_path / "b", seed=0)
    assert calls == {"truss": SMALL["heldout/DIS-TE1"], "animal": SMALL["heldout/test-fg"]}


def test_every_kind_draws_what_it_stands_for():
    """Every thin kind (the held-out one too) gives a non-empty GT; all but the solid objects with
    holes are mostly thin (vanish under a 2 px erosion), those have holes. Every matte has partial
    alpha; the transparent ones (partial alpha inside the body, not only at its edge) are few."""
    kinds = [(kind, "DIS-TR", list(synthetic.THIN_KINDS).index(kind), len(synthetic.THIN_KINDS))
             for kind in synthetic.THIN_KINDS] + [("truss", "heldout/DIS-TE1", 0, 1)]
    for kind, stream, first, step in kinds:
        gts = [synthetic.thin_image(0, stream, first + step * r)[1] > 128 for r in range(3)]
        assert all(synthetic.thin_kind(stream, first + step * r) == kind for r in range(3))
        assert all(m.sum() >= 100 for m in gts), kind
        if kind == "holes":
            assert all(ndimage.label(~m)[1] > 1 for m in gts)  # background inside the object
            assert np.mean([eroded_away(m) for m in gts]) < 0.5
        else:
            assert np.mean([eroded_away(m) for m in gts]) > 0.3, kind
    transparent = []
    kinds = [(kind, "matting/val-fg", synthetic.MATTE_KINDS) for kind in synthetic.MATTE_KINDS]
    for kind, stream, among in kinds + [("animal", "heldout/test-fg", ("animal",))]:
        inside = []
        for r in range(3):
            i = among.index(kind) + len(among) * r
            assert synthetic.matte_kind(stream, i) == kind
            alpha = synthetic.matte_fg(0, stream, i)[1]
            soft = (alpha > 0) & (alpha < 255)
            assert soft.sum() > 0.05 * (alpha > 0).sum(), kind
            body = ndimage.binary_erosion(alpha > 0, iterations=3)
            inside.append((alpha[body] < 230).mean())
        if np.mean(inside) > 0.75:
            transparent.append(kind)
    assert transparent == ["glass", "veil"]
    assert len(transparent) < len(synthetic.MATTE_KINDS) / 3  # AIM: mostly opaque


def test_the_thin_split_is_thin():
    """Most of a thin structure's pixels vanish under a 2 px erosion; a solid shape keeps most."""
    thin = [eroded_away(synthetic.thin_pair(0, "DIS-TE1", i)[1] > 128) for i in range(10)]
    solid = [eroded_away(synthetic.solid_pair(0, "DIS-TE1", i)[1] > 128) for i in range(10)]
    assert np.mean(thin) > 0.6 and np.mean(solid) < 0.25


def test_cli_refuses_a_folder_that_is_not_empty(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("mine")
    assert synthetic.main([str(tmp_path)]) == 2
    assert f"{tmp_path}: exists and is not an empty folder" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_examples_are_the_benchmarks_test_files(bench, tmp_path):
    """app.py's examples: byte for byte the benchmark's test files (DIS-TE1 images 0-2 and the
    Composition-1K composites of foregrounds 0-1 over their first background are in `bench`)."""
    root = tmp_path / "examples"
    listed = synthetic.write_examples(root, seed=0, per_kind=1)
    kinds = [e["kind"] for e in listed]
    thin, mattes = len(synthetic.THIN_KINDS), len(synthetic.MATTE_KINDS)
    assert [e["split"] for e in listed] == ["DIS-TE1"] * thin + ["Composition-1K"] * mattes
    assert kinds == [*synthetic.THIN_KINDS, *synthetic.MATTE_KINDS]
    assert json.loads((root / "examples.json").read_text()) == listed
    assert {p.name for p in root.iterdir()} == {e["file"] for e in listed} | {"examples.json"}
    test = bench / "AIM/Combined_Dataset/Test_set/Adobe-licensed images/merged"
    for name, source in [("DIS-TE1_0000.jpg", bench / "DIS5K/DIS-TE1/im/DIS-TE1_0000.jpg"),
                         ("DIS-TE1_0002.jpg", bench / "DIS5K/DIS-TE1/im/DIS-TE1_0002.jpg"),
                         ("test_0000_0.png", test / "test_0000_0.png"),
                         ("test_0001_0.png", test / "test_0001_0.png")]:
        assert (root / name).read_bytes() == source.read_bytes(), name
    assert not list(tmp_path.glob(".examples.tmp-*"))
    (root / "DIS-TE1_0000.jpg").write_bytes(b"kept")  # a second call reads the cache only
    assert synthetic.write_examples(root, seed=0, per_kind=1) == listed
    assert (root / "DIS-TE1_0000.jpg").read_bytes() == b"kept"


# ----------------------------------------------------------------------------------------------
# The toy datasets (make_toy)
# ----------------------------------------------------------------------------------------------


def test_make_toy_writes_every_layout(toy):
    assert len(readers.dis_pairs(toy, "DIS-TR")) == 8
    assert len(readers.dis_pairs(toy / "DIS5K", "DIS-VD")) == 4
    for k in range(1, 5):
        assert len(readers.dis_pairs(toy, f"DIS-TE{k}")) == 2
    assert len(readers.dis_pairs(toy, "DIS-TE")) == 8
    for pair in readers.dis_pairs(toy, "DIS-TR"):
        assert (
            pair[0].suffix == ".jpg" and pair[1].suffix == ".png" and pair[0].stem == pair[1].stem
        )
    # --matting: the folder holding Combined_Dataset, or Combined_Dataset itself
    for matting in (toy / "AIM", toy / "AIM" / "Combined_Dataset"):
        assert len(readers.aim_train_pairs(matting)) == 8
        assert len(readers.composition1k_pairs(matting)) == 8
    assert {p[0].parent.parent.name for p in readers.aim_train_pairs(toy / "AIM")} == {
        "Adobe-licensed images",
        "Other",
    }
    assert len(readers.aim500_pairs(toy)) == len(readers.aim500_pairs(toy / "AIM-500")) == 4
    assert len(backgrounds(toy)) == 4
    readers.check_pairs(readers.dis_pairs(toy, "DIS-TR"))
    readers.check_pairs(readers.aim_train_pairs(toy / "AIM"), matting=True)
    readers.check_pairs(readers.composition1k_pairs(toy / "AIM"), matting=True)
    readers.check_pairs(readers.aim500_pairs(toy), matting=True)


def test_make_toy_trimaps_and_determinism(toy, tmp_path):
    _, alpha, trimap = (readers.load_mask(p) for p in readers.composition1k_pairs(toy / "AIM")[0])
    assert set(np.unique(trimap)) <= {0, 128, 255}
    assert (trimap[(alpha > 0) & (alpha < 255)] == 128).all()  # every soft pixel is unknown
    assert (alpha[trimap == 255] == 255).all() and (alpha[trimap == 0] == 0).all()
    counts = dict(n_train=1, n_val=1, n_test=1, n_fg=1, n_comp=1, n_aim500=1, n_bg=1)
    synthetic.make_toy(tmp_path / "a", seed=3, **counts)
    synthetic.make_toy(tmp_path / "b", seed=3, **counts)
    files = sorted(
        p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file()
    )
    # DIS5K, AIM train, comp-1K (fg, alpha, merged, alpha_copy, trimap), AIM-500, bg
    assert len(files) == 6 * 2 + 2 + 5 + 3 + 1
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
