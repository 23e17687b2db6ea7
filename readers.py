"""Reading the datasets: image and mask files, the official layouts, the splits by name, pre-flight.

Images and masks load from any common file (load_image, load_mask); a reader for each official
layout pairs files by stem; SPLITS names every split (the names evaluate.py --split takes);
Distinctions-646's test set is composited once (Adobe's rule, composite; trimaps, make_trimap);
check_pairs decodes every file before a long job. numpy, Pillow, scipy and the standard library
only (no torch), so that a prediction path without torch reads its images with load_image.

    python readers.py check DIS-TR ./DIS5K                # any name of SPLITS, then its folder
    python readers.py check Distinctions-646 ./Distinctions-646 --backgrounds ./VOC/JPEGImages

Layouts read, as the datasets are distributed, each reader pairing files by stem:

    layout                                                         reader
    DIS5K/{DIS-TR, DIS-VD, DIS-TE1..4}/{im, gt}                    dis_pairs(root, split)
    ThinObject5K/{images, masks, list/{train,test}.txt}            thin_pairs(root, split)
    ThinObject5K/{images_train, masks_train, images_test, masks_test} (HQ-SAM's repack): the same
    Combined_Dataset/Training_set/{Adobe-licensed images, Other}/{fg, alpha}   aim_train_pairs(root)
    Combined_Dataset/Test_set/Adobe-licensed images/{merged, alpha_copy, trimaps}
                                                                   composition1k_pairs(root)
    AIM-500/{original, mask, trimap}                               aim500_pairs(root)
    COIFT/{images, masks}                                          coift_pairs(root)
    AM-2K/validation/{original, mask, trimap}                      am2k_pairs(root)
    P3M-10k/validation/P3M-500-NP/{original_image, mask, trimap}   p3m500np_pairs(root)
    RefMatte_RW_100/{image_all, mask, refmatte_rw100_label.json}   refmatte_rw100_pairs(root)
    Distinctions-646/Test/{FG, GT}                                 d646_test_pairs(root)
    Distinctions-646/Test/{FG, GT, bg_test.txt}, composited once into
      Test/composite/{merged, alpha_copy, trimaps}                 d646_test_triples(root, bgs)
    Distinctions-646/Train/{FG, GT, bg_train.txt}                  d646_train_pairs(root, bgs)
    a plain folder: DIR/{im, gt}, DIR/{im, alpha}, DIR/{fg, alpha} folder_sets(root)

Every reader accepts the dataset folder itself or the folder holding it; file names need not be
UTF-8 (their bytes are kept: digests, the held-out split and outputs use them).

What is refused. Every problem is a one-line DataError naming the file, raised before any work:
evaluate.py and train.py check a split (check_pairs) before the first prediction or step, and
`python readers.py check` does it alone (exit status 2 and "error: ...").

- Any layout: a missing folder; a file without its pair (files pair by stem) or two files of one
  stem; an unreadable or truncated file (every file is fully decoded: Image.verify passes a
  truncated JPEG); files of one tuple of different sizes (after EXIF rotation); a symbolic link to
  nothing (Path.is_file is false for it: it would leave the set without a word). A GT with no
  object, which has no prompt box: no pixel gt > 128 (masks), alpha > 0 (mattes), alpha > 127
  (RefMatte-RW100); refused rather than scored IoU 0 or skipped, which would change the set a
  mean is taken over.
- Masks and alphas (load_mask): colour takes the maximum of R, G, B; an RGBA mask of constant colour
  is its alpha; 16-bit values are / 257; EXIF orientation is applied to images and masks alike.
  Float files (mode F, e.g. a TIFF alpha) in [0, 1], give or take 0.01 (a resampler's overshoot,
  clipped), are x 255: read as 0 / 1, a [0, 1] alpha would score nearly black (a float 0 / 1 mask
  reads 0 / 255). Float or 32-bit integer values above 1 read as 8-bit, above 255 as 16-bit
  (/ 257); a negative, NaN or infinite value, or one above 65535, is refused.
- Trimaps that are scored (Composition-1K; Distinctions-646's made ones) hold only 0, 128 and 255,
  with some 128 (check_trimap): only exact 128 is scored, so an unknown of 127 or 1 would score
  SAD 0 and a JPEG trimap another region; the file and its values are named. Trimaps that are not
  scored (AM-2K, P3M-500-NP, AIM-500) are not read.
- Backgrounds (--backgrounds under composited foregrounds; Distinctions-646's listed ones): every
  image a run will draw is decoded before step 1 (threads, check_backgrounds), the unreadable
  ones named in one line (count, first three): one more pass per run, against a crash hours in.
- Distinctions-646: Test/bg_test.txt lists 1,000 VOC 2012 JPEGImages names, 20 per foreground;
  Train/bg_train.txt 59,600 COCO names written as train2014 files (COCO_train2014_<id>.jpg), 100
  per foreground, a name not in the folder looked up as <id>.jpg (train2017's name for it). The
  lists have CRLF line ends, bg_train.txt no final newline: read with LF or CRLF, with or without.
  Foreground k (in name order: the archive ships no foreground list) takes names 20 k .. 20 k + 19,
  in the list's order. Names not in --backgrounds are refused in one line (count, first). The
  test composite (Test/composite/{merged, alpha_copy, trimaps}/{stem}_{i}.png, as Composition-1K;
  trimaps make_trimap(alpha, 5)) is written whole or not at all with a manifest of the list and
  the SHA-256 of every input: one of other files, list or rule, or a partial one, is refused.
- RefMatte-RW100: image_all holds one image per labelled object, named as its alpha in mask and
  its entry in refmatte_rw100_label.json; where image_all lacks it, the entry's image_name (a file
  name or a stem in image_all) is the image, as the field's readers fall back. Only the entries'
  names and image names are read.
- A folder of one's own: DIR/{im, gt} masks, DIR/{im, alpha} mattes (used as they are),
  DIR/{fg, alpha} foregrounds (composited over --backgrounds); im and fg both beside alpha, with
  no gt, is refused (which do the alphas belong to?). A tenth of each kind (at least one, given
  two) is held out for validation (split_held_out): the stems first in the order of
  crc32("0/" + stem), names only, so every run, seed and machine holds out the same files.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import sys
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from scipy import ndimage

from outputs import first_few, run_main, sha256_file, whole_folder

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}  # compared lower-cased
FLOAT_SLACK = 0.01  # a float alpha in [-0.01, 1.01] is a [0, 1] alpha with rounding errors


class DataError(ValueError):
    """A problem with the data on disk; the message is one line and names the file."""


# ----------------------------------------------------------------------------------------------
# Loading images and masks
# ----------------------------------------------------------------------------------------------


def _open(path) -> Image.Image:
    """Open, fully decode (so truncation shows here, not mid-training) and apply EXIF
    orientation."""
    try:
        img = Image.open(path)
        img.load()
        return ImageOps.exif_transpose(img)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        msg = " ".join(str(e).split()) or type(e).__name__
        raise DataError(f"{path}: cannot read image ({msg})") from None


def _one_channel_8bit(img: Image.Image, path) -> np.ndarray:
    """(H, W) 8-bit array from a one-channel image of any depth, or a DataError naming the file.

    16-bit values are scaled to 0-255 (/ 257). 32-bit integers hold 8-bit values, or 16-bit ones
    (older Pillow opens 16-bit PNGs as "I"). Floats (mode F, e.g. a TIFF alpha) in [0, 1] (give
    or take FLOAT_SLACK, rounding's overshoot) are scaled by 255, larger ones read as 8-bit or
    16-bit values as integers are; a negative, NaN or infinite value, or one above 65535, is
    refused."""
    if img.mode.startswith("I;16"):
        return np.round(np.asarray(img, dtype=np.float64) / 257.0).astype(np.uint8)
    if img.mode in ("I", "F"):
        a = np.asarray(img, dtype=np.float64)
        if img.mode == "F" and np.isfinite(a).all() and a.min() >= -FLOAT_SLACK and (
                a.max() <= 1 + FLOAT_SLACK):
            return np.round(np.clip(a, 0, 1) * 255).astype(np.uint8)
        if not np.isfinite(a).all() or a.min() < 0 or a.max() > 65535:
            finite = a[np.isfinite(a)]
            found = (f"{finite.min():g}..{finite.max():g}" if finite.size else "no finite value")
            raise DataError(f"{path}: {img.mode}-mode values outside 0..1, 0..255 and 0..65535 "
                            f"({found}{'' if finite.size == a.size else ', NaN or inf'})")
        if a.max() > 255:
            a = a / 257.0
        return np.clip(np.round(a), 0, 255).astype(np.uint8)
    return np.asarray(img.convert("L"))


def load_image(path) -> np.ndarray:
    """Image file -> (H, W, 3) uint8 RGB. Grayscale, palette, RGBA (alpha dropped), 16-bit: all
    read."""
    img = _open(path)
    if img.mode.startswith("I") or img.mode == "F":
        return np.repeat(_one_channel_8bit(img, path)[:, :, None], 3, axis=2)
    return np.asarray(img.convert("RGB"))


def load_mask(path) -> np.ndarray:
    """Mask / alpha file -> (H, W) uint8 0-255.

    Colour masks take the maximum over R, G, B (a red-on-black mask stays 255). With an alpha
    channel the colour is used, unless the colour is constant over the image: then the mask was
    saved as transparency and the alpha channel is the mask. 16-bit masks are scaled to 0-255.
    """
    img = _open(path)
    if img.mode in ("P", "PA"):
        img = img.convert("RGBA")
    if img.mode in ("LA", "RGBA", "La", "RGBa"):
        a = np.asarray(img)
        colour, alpha = a[..., :-1], a[..., -1]
        if colour.min() == colour.max() and alpha.min() != alpha.max():
            return np.ascontiguousarray(alpha)
        return colour.max(axis=2)
    if img.mode in ("RGB", "CMYK", "YCbCr", "HSV", "LAB"):
        return np.asarray(img.convert("RGB")).max(axis=2)
    return _one_channel_8bit(img, path)


# ----------------------------------------------------------------------------------------------
# Readers for the official layouts
# ----------------------------------------------------------------------------------------------


def _enter(root, name: str) -> Path:
    """Accept the dataset folder itself or the folder holding it."""
    root = Path(root)
    return root / name if root.name != name and (root / name).is_dir() else root


def _require(root: Path, sub: str, layout: str) -> Path:
    """root / sub, or a DataError showing the expected layout."""
    if not root.is_dir():
        raise DataError(f"{root}: folder not found; expected {layout}")
    if not (root / sub).is_dir():
        raise DataError(f"{root}: no {sub} folder; expected {layout}")
    return root / sub


def image_files(folder) -> list[Path]:
    """Sorted image files of a folder (any case of extension; hidden files ignored), e.g.
    --backgrounds."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: folder not found")
    files = [p for p in sorted(folder.iterdir())
             if not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTS]
    dangling = [p for p in files if p.is_symlink() and not p.exists()]
    if dangling:
        raise DataError(f"{folder}: symbolic links to nothing, {len(dangling)} file"
                        f"{'s' * (len(dangling) > 1)}: {first_few([p.name for p in dangling])} "
                        f"(the first points to {os.readlink(dangling[0])}); fix or remove them")
    files = [p for p in files if p.is_file()]
    if not files:
        raise DataError(f"{folder}: no image files")
    return files


def _files(folder: Path) -> dict[str, Path]:
    """{stem: path} of the image files in folder."""
    out: dict[str, Path] = {}
    for p in image_files(folder):
        if p.stem in out:
            raise DataError(
                f"{p}: two files with the stem {p.stem!r} ({out[p.stem].name}, {p.name})"
            )
        out[p.stem] = p
    return out


def _pair_folders(*folders: Path) -> list[tuple[Path, ...]]:
    """Files of the folders matched by stem: [(image, mask, ...)], sorted by stem."""
    files = [_files(f) for f in folders]
    for other, folder in zip(files[1:], folders[1:]):
        for stem, p in files[0].items():
            if stem not in other:
                raise DataError(f"{p}: no file named {stem}.* in {folder}")
        for stem, p in other.items():
            if stem not in files[0]:
                raise DataError(f"{p}: no file named {stem}.* in {folders[0]}")
    return [tuple(f[s] for f in files) for s in sorted(files[0])]


DIS_SPLITS = {s: [s] for s in ("DIS-TR", "DIS-VD", "DIS-TE1", "DIS-TE2", "DIS-TE3", "DIS-TE4")}
DIS_SPLITS["DIS-TE"] = ["DIS-TE1", "DIS-TE2", "DIS-TE3", "DIS-TE4"]


def dis_pairs(root, split: str) -> list[tuple[Path, Path]]:
    """DIS5K (image, mask) pairs of one split; "DIS-TE" is the four test splits together."""
    if split not in DIS_SPLITS:
        raise DataError(f"unknown DIS5K split {split!r}; one of {', '.join(DIS_SPLITS)}")
    root = _enter(root, "DIS5K")
    layout = "DIS5K/{DIS-TR,DIS-VD,DIS-TE1..4}/{im,gt}"
    pairs = []
    for s in DIS_SPLITS[split]:
        pairs += _pair_folders(_require(root, f"{s}/im", layout), _require(root, f"{s}/gt", layout))
    return pairs


def thin_pairs(root, split: str) -> list[tuple[Path, Path]]:
    """ThinObject-5K (image, mask) pairs, split "train" or "test", from either layout.

    Original release: list/{split}.txt names the mask files, the image has the same stem.
    HQ-SAM's repack: images_{split} / masks_{split}.
    """
    if split not in ("train", "test"):
        raise DataError(f"unknown ThinObject-5K split {split!r}; one of train, test")
    root = _enter(root, "ThinObject5K")
    layout = ("ThinObject5K/{images,masks,list/{train,test}.txt} or "
              "ThinObject5K/{images,masks}_{train,test}")
    if (root / f"images_{split}").is_dir():
        return _pair_folders(root / f"images_{split}", _require(root, f"masks_{split}", layout))
    images, masks = _files(_require(root, "images", layout)), _require(root, "masks", layout)
    listing = root / "list" / f"{split}.txt"
    if not listing.is_file():
        raise DataError(f"{root}: no list/{split}.txt; expected {layout}")
    pairs = []
    for name in listing.read_text().split():
        mask = masks / name
        if not mask.is_file():
            raise DataError(f"{mask}: listed in {listing} but not found")
        if mask.stem not in images:
            raise DataError(f"{mask}: no image named {mask.stem}.* in {root / 'images'}")
        pairs.append((images[mask.stem], mask))
    if not pairs:
        raise DataError(f"{listing}: empty list")
    return pairs


def _combined_dataset(root) -> Path:
    """The Combined_Dataset folder, given it or the folder holding it (the --matting argument)."""
    root = _enter(root, "Combined_Dataset")
    if not root.is_dir():
        raise DataError(
            f"{root}: folder not found; expected Combined_Dataset/{{Training_set,Test_set}}"
        )
    return root


def aim_train_pairs(root) -> list[tuple[Path, Path]]:
    """AIM training (foreground, alpha) pairs from the Adobe-licensed and Other folders."""
    root = _combined_dataset(root)
    layout = "Combined_Dataset/Training_set/{Adobe-licensed images,Other}/{fg,alpha}"
    subsets = [
        s for s in ("Adobe-licensed images", "Other") if (root / "Training_set" / s).is_dir()
    ]
    if not subsets:
        raise DataError(f"{root}: no Training_set/Adobe-licensed images folder; expected {layout}")
    pairs = []
    for s in subsets:
        sub = f"Training_set/{s}"
        pairs += _pair_folders(
            _require(root, f"{sub}/fg", layout), _require(root, f"{sub}/alpha", layout)
        )
    return pairs


def composition1k_pairs(root) -> list[tuple[Path, Path, Path]]:
    """Composition-1K (merged image, alpha, trimap) triples, pre-composited."""
    root = _combined_dataset(root)
    layout = "Combined_Dataset/Test_set/Adobe-licensed images/{merged,alpha_copy,trimaps}"
    sub = "Test_set/Adobe-licensed images"
    return _pair_folders(
        *(_require(root, f"{sub}/{d}", layout) for d in ("merged", "alpha_copy", "trimaps"))
    )


def _triples(
    root, name: str, sub: str, dirs: tuple[str, str, str]
) -> list[tuple[Path, Path, Path]]:
    root = _enter(root, name)
    layout = f"{name}/{sub}{{{','.join(dirs)}}}"
    return _pair_folders(*(_require(root, sub + d, layout) for d in dirs))


def aim500_pairs(root) -> list[tuple[Path, Path, Path]]:
    """AIM-500 (image, alpha, trimap) triples of natural images."""
    return _triples(root, "AIM-500", "", ("original", "mask", "trimap"))


def am2k_pairs(root) -> list[tuple[Path, Path, Path]]:
    """AM-2K validation (image, alpha, trimap) triples."""
    return _triples(root, "AM-2K", "validation/", ("original", "mask", "trimap"))


def p3m500np_pairs(root) -> list[tuple[Path, Path, Path]]:
    """P3M-500-NP (image, alpha, trimap) triples (P3M-10k's non-private validation set)."""
    return _triples(root, "P3M-10k", "validation/P3M-500-NP/", ("original_image", "mask", "trimap"))


def coift_pairs(root) -> list[tuple[Path, Path]]:
    """COIFT (image, mask) pairs."""
    root = _enter(root, "COIFT")
    layout = "COIFT/{images,masks}"
    return _pair_folders(_require(root, "images", layout), _require(root, "masks", layout))


REFMATTE_LABELS = "refmatte_rw100_label.json"


def refmatte_rw100_pairs(root) -> list[tuple[Path, Path]]:
    """RefMatte-RW100 (image, alpha) pairs, one per entry of refmatte_rw100_label.json ({stem:
    {"image_name": ..., "expressions": [...]}}) and its mask/{stem}.png. The image is
    image_all/{stem}.*, or, where image_all lacks that file, the entry's image_name (a file name,
    or a stem) in image_all, as the field's readers fall back. Only the entries' keys and image
    names are read: SAMA is prompted with the alpha's box, not with the referring expressions."""
    root = _enter(root, "RefMatte_RW_100")
    layout = f"RefMatte_RW_100/{{image_all,mask,{REFMATTE_LABELS}}}"
    images_dir = _require(root, "image_all", layout)
    images, masks = _files(images_dir), _files(_require(root, "mask", layout))
    labels_path = root / REFMATTE_LABELS
    if not labels_path.is_file():
        raise DataError(f"{root}: no {REFMATTE_LABELS}; expected {layout}")
    try:
        labels = json.loads(labels_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise DataError(f"{labels_path}: not readable JSON ({' '.join(str(e).split())})") from None
    if not isinstance(labels, dict):
        raise DataError(f"{labels_path}: holds a JSON {type(labels).__name__}, not an object "
                        f"keyed by the mask stems")
    by_name = {p.name: p for p in images.values()}
    pairs = []
    for stem in sorted(masks):
        if stem not in labels:
            raise DataError(f"{masks[stem]}: no entry {stem!r} in {labels_path}")
        entry = labels[stem]
        name = str(entry.get("image_name", "")) if isinstance(entry, dict) else ""
        image = images.get(stem) or by_name.get(name) or images.get(Path(name).stem)
        if image is None:
            raise DataError(f"{masks[stem]}: no image {stem}.* in {images_dir}, nor the entry's "
                            f"image_name {name!r}")
        pairs.append((image, masks[stem]))
    used = {image for image, _ in pairs}
    for stem, image in sorted(images.items()):
        if image not in used:  # neither a mask's own image nor an entry's image_name
            raise DataError(f"{image}: no file named {stem}.* in {root / 'mask'}")
    unpaired = sorted(set(labels) - set(masks))
    if unpaired:
        raise DataError(f"{labels_path}: entry {unpaired[0]!r} has no image_all / mask pair")
    return pairs


FOLDER_LAYOUT = "DIR/{im,gt} (masks), DIR/{im,alpha} or DIR/{fg,alpha} (mattes)"
HELD_OUT = 0.1  # a plain folder's validation share ...
HELD_OUT_SEED = 0  # ... chosen by crc32 of (this seed, the stem): the same split for every run


def is_dis5k(root) -> bool:
    """Whether root (or root/DIS5K) holds DIS5K's training split."""
    return (_enter(root, "DIS5K") / "DIS-TR").is_dir()


def is_plain_folder(root) -> bool:
    """Whether root is a plain folder of one's own images (FOLDER_LAYOUT) rather than DIS5K."""
    return not is_dis5k(root) and any((Path(root) / d).is_dir() for d in ("gt", "alpha"))


def folder_sets(root) -> dict[str, list]:
    """A plain folder of one's own images, pairs by stem: {"masks": [(image, mask)] from
    DIR/{im, gt}, "mattes": [(image, alpha)] from DIR/{im, alpha}, "foregrounds": [(foreground,
    alpha)] from DIR/{fg, alpha}, to composite over backgrounds}. Masks and mattes may share im/."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: folder not found; expected {FOLDER_LAYOUT}")
    sets = {"masks": [], "mattes": [], "foregrounds": []}
    if (root / "gt").is_dir():
        sets["masks"] = _pair_folders(_require(root, "im", FOLDER_LAYOUT), root / "gt")
    if (root / "alpha").is_dir():
        if (root / "fg").is_dir() and (root / "im").is_dir() and not sets["masks"]:
            raise DataError(f"{root}: both im and fg beside alpha; keep the one the alphas belong "
                            f"to (expected {FOLDER_LAYOUT})")
        if (root / "fg").is_dir():
            sets["foregrounds"] = _pair_folders(root / "fg", root / "alpha")
        else:
            sets["mattes"] = _pair_folders(_require(root, "im", FOLDER_LAYOUT), root / "alpha")
    if not any(sets.values()):
        raise DataError(f"{root}: no gt or alpha folder; expected {FOLDER_LAYOUT}")
    return sets


def folder_masks(root) -> list[tuple[Path, Path]]:
    """A plain folder's (image, mask) pairs: DIR/{im, gt}."""
    sets = folder_sets(root)
    if not sets["masks"]:
        raise DataError(f"{root}: no gt folder of masks; expected DIR/{{im,gt}}")
    return sets["masks"]


def folder_mattes(root) -> list[tuple[Path, Path]]:
    """A plain folder's (image, alpha) pairs as they are: DIR/{im, alpha}."""
    sets = folder_sets(root)
    if not sets["mattes"]:
        raise DataError(f"{root}: no im and alpha folders of images and their mattes; expected "
                        f"DIR/{{im,alpha}} (foregrounds in fg/ are composited for training only)")
    return sets["mattes"]


def split_held_out(pairs, share: float = HELD_OUT, seed: int = HELD_OUT_SEED) -> tuple:
    """(training, validation) of a plain folder's pairs: validation = the round(share x n) pairs (at
    least one, given two or more) whose stems come first in the order of crc32(f"{seed}/{stem}")
    (the stem's bytes on disk, UTF-8 or not), each list kept in stem order. The rule reads names
    only: the same split on every run."""
    pairs = list(pairs)
    if len(pairs) < 2:
        return pairs, []
    n = max(1, round(share * len(pairs)))
    order = sorted(range(len(pairs)),
                   key=lambda i: (zlib.crc32(os.fsencode(f"{seed}/{Path(pairs[i][1]).stem}")), i))
    held = set(order[:n])
    by_stem = sorted(range(len(pairs)), key=lambda i: (Path(pairs[i][1]).stem, i))
    return ([pairs[i] for i in by_stem if i not in held], [pairs[i] for i in by_stem if i in held])


# ----------------------------------------------------------------------------------------------
# Compositing (Adobe's rule) and trimaps
# ----------------------------------------------------------------------------------------------


def composite(fg: np.ndarray, alpha: np.ndarray, bg: np.ndarray) -> np.ndarray:
    """Adobe's composition: I = alpha F + (1 - alpha) B, truncated to uint8 as their script does.

    fg (H, W, 3) uint8, alpha (H, W) uint8, bg (bh, bw, 3) uint8 -> (H, W, 3) uint8. A background
    smaller than the foreground in either side is first upscaled bicubically by max(W/bw, H/bh)
    (sizes rounded up); the background is then cropped at (0, 0) to the foreground's size.
    """
    h, w = alpha.shape
    bh, bw = bg.shape[:2]
    if bw < w or bh < h:
        r = max(w / bw, h / bh)
        bg = np.asarray(
            Image.fromarray(bg).resize((math.ceil(bw * r), math.ceil(bh * r)), Image.BICUBIC)
        )
    b = bg[:h, :w].astype(np.float64)
    a = alpha[:, :, None].astype(np.float64) / 255.0
    # Eq. (1): I = alpha F + (1 - alpha) B
    return (a * fg + (1.0 - a) * b).astype(np.uint8)


def make_trimap(alpha: np.ndarray, radius: int = 5) -> np.ndarray:
    """(H, W) uint8 alpha -> trimap 0 / 128 / 255: unknown = dilation of alpha > 0 minus erosion of
    alpha == 255 (radius pixels each way), 255 inside, 0 outside."""
    known_fg = ndimage.binary_erosion(alpha == 255, iterations=radius)
    unknown = ndimage.binary_dilation(alpha > 0, iterations=radius) & ~known_fg
    return np.where(known_fg, 255, np.where(unknown, 128, 0)).astype(np.uint8)


# ----------------------------------------------------------------------------------------------
# Distinctions-646's test set: composited once, as Composition-1K is distributed
# ----------------------------------------------------------------------------------------------

D646_PER_FG = 20  # backgrounds per test foreground, as Composition-1K (Adobe's test set: 50 x 20)
D646_TEST_LIST = "bg_test.txt"  # in Test/: the VOC 2012 names, 20 per foreground in turn
D646_TRAIN_LIST = "bg_train.txt"  # in Train/: COCO names as train2014 files, 100 per foreground
D646_TRIMAP_RADIUS = 5  # the set ships no trimaps: the unknown band of make_trimap(alpha, 5)
D646_FORMAT = "sama-d646-test-composite-2"  # in the manifest: a composite of another rule is stale
D646_FOLDERS = ("merged", "alpha_copy", "trimaps")
COCO_2014 = re.compile(r"^COCO_(train|val)2014_")  # COCO_train2014_<id>.jpg is <id>.jpg in 2017


def read_name_list(path) -> list[str]:
    """The file names of a list, one a line: LF or CRLF line ends, with or without a final
    newline; blanks around a name and empty lines are ignored."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"{path}: not found (the list of background names the set ships)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read the list ({' '.join(str(e).split())})") from None
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise DataError(f"{path}: empty list")
    return names


def resolve_listed(names: list[str], folder, listing) -> list[Path]:
    """Each listed name as a file of `folder`, in the list's order: the name itself, or for a COCO
    2014 name (COCO_train2014_<id>.jpg) the file <id>.jpg, as COCO train2017 holds the same image.
    Names not found are refused in one line: their count and the first."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: folder not found (the background images {listing} names)")
    present = set(os.listdir(folder))  # one listing, not a lookup per name
    paths, missing = [], []
    for name in names:
        found = next((n for n in (name, COCO_2014.sub("", name)) if n in present), None)
        if found is None:
            missing.append(name)
        else:
            paths.append(folder / found)
    if missing:
        raise DataError(f"{folder}: {len(missing)} of the {len(names)} backgrounds listed in "
                        f"{listing} not found (first: {missing[0]})")
    return paths


def check_backgrounds(paths, workers: int = 0) -> None:
    """Decode every background image once (threads, as check_pairs); the unreadable ones are
    named in one DataError: their count and the first few."""
    unique = sorted(set(map(Path, paths)))
    workers = workers or min(8, os.cpu_count() or 1)

    def problem(path):
        try:
            _open(path)
        except DataError as e:
            return str(e)
        return None

    with ThreadPoolExecutor(workers) as pool:
        problems = [p for p in pool.map(problem, unique) if p is not None]
    if problems:
        shown = "; ".join(problems[:3]) + ("; ..." if len(problems) > 3 else "")
        raise DataError(f"{len(problems)} of {len(unique)} background images cannot be read: "
                        f"{shown}")


def d646_test_pairs(root) -> list[tuple[Path, Path]]:
    """Distinctions-646 test (foreground, alpha) pairs as distributed: Test/{FG, GT}."""
    root = _enter(root, "Distinctions-646")
    layout = "Distinctions-646/Test/{FG,GT}"
    return _pair_folders(_require(root, "Test/FG", layout), _require(root, "Test/GT", layout))


def d646_train_pairs(root, backgrounds) -> list[tuple[Path, Path, tuple[Path, ...]]]:
    """Distinctions-646 training (foreground, alpha, its backgrounds) from Train/{FG, GT} and
    Train/bg_train.txt: foreground k (in name order) takes names k n .. k n + n - 1 of the list,
    n = names / foregrounds (100 in the archive: 59,600 for 596), each found in `backgrounds`
    (COCO train2017, or train2014 itself)."""
    root = _enter(root, "Distinctions-646")
    layout = "Distinctions-646/Train/{FG,GT,bg_train.txt}"
    pairs = _pair_folders(_require(root, "Train/FG", layout), _require(root, "Train/GT", layout))
    listing = root / "Train" / D646_TRAIN_LIST
    names = read_name_list(listing)
    if len(names) % len(pairs):
        raise DataError(f"{listing}: {len(names)} names, not a whole number per foreground for "
                        f"the {len(pairs)} in Train/FG")
    per_fg = len(names) // len(pairs)
    bg = resolve_listed(names, backgrounds, listing)
    return [(fg, alpha, tuple(bg[k * per_fg:(k + 1) * per_fg]))
            for k, (fg, alpha) in enumerate(pairs)]


def d646_test_triples(root, backgrounds=None) -> list[tuple[Path, Path, Path]]:
    """Distinctions-646's test set composited like Composition-1K: (merged, alpha, trimap) triples.

    Foreground k (in stem order) goes over the images named 20 k .. 20 k + 19 of Test/bg_test.txt
    (the archive's list of 1,000 VOC 2012 names), found in `backgrounds` (VOC's JPEGImages), by
    Adobe's rule (composite), as Adobe's test script pairs its own list in order. Written once, as
    Composition-1K is distributed, to Test/composite/{merged, alpha_copy, trimaps}/{stem}_{i}.png;
    the trimap, which the set does not ship, is make_trimap(alpha, D646_TRIMAP_RADIUS), whose
    unknown band evaluate.py scores beside the whole image. The folder appears whole or not at all
    (written beside it, then renamed), with a manifest of what went in (the list, and the SHA-256
    of every input file).

    An existing composite is used if its manifest matches the foregrounds, alphas and list (and the
    backgrounds, when given); a stale or partial one is refused in one line, as is a missing one
    when no backgrounds are given.
    """
    pairs = d646_test_pairs(root)
    test = pairs[0][0].parent.parent
    listing = test / D646_TEST_LIST
    names = read_name_list(listing)
    need = D646_PER_FG * len(pairs)
    if len(names) != need:
        raise DataError(f"{listing}: {len(names)} names; {len(pairs)} test foregrounds x "
                        f"{D646_PER_FG} backgrounds need {need}")
    folder = test / "composite"
    manifest = {"format": D646_FORMAT, "per_foreground": D646_PER_FG,
                "trimap_radius": D646_TRIMAP_RADIUS, "list": names,
                "foregrounds": [[fg.name, alpha.name, sha256_file(fg), sha256_file(alpha)]
                                for fg, alpha in pairs]}
    used = None  # the backgrounds' [name, sha256], in the order they are used
    if backgrounds is not None:
        bg_files = resolve_listed(names, backgrounds, listing)
        used = [[b.name, sha256_file(b)] for b in bg_files]
    if not folder.exists():
        if used is None:
            raise DataError(f"{folder}: not composited yet; give --backgrounds, the folder "
                            f"holding the images {listing} names (VOC 2012's JPEGImages)")
        check_backgrounds(bg_files)
        print(f"compositing Distinctions-646's test set once: {len(pairs)} foregrounds x "
              f"{D646_PER_FG} backgrounds of {listing.name} -> {folder}")
        _write_d646_composite(pairs, bg_files, {**manifest, "backgrounds": used}, folder)

    # what is on disk must be what these files make, and all of it
    again = "delete it to composite again"
    try:
        found = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        raise DataError(f"{folder}: no readable manifest.json (a partial or foreign composite); "
                        f"{again}") from None
    if not isinstance(found, dict) or {k: found.get(k) for k in manifest} != manifest:
        raise DataError(f"{folder}: stale: composited from other files than {test}/{{FG,GT}} and "
                        f"{listing.name}, or by another rule; {again}")
    if used is not None and found.get("backgrounds") != used:
        raise DataError(f"{folder}: stale: composited over other files than the backgrounds "
                        f"{listing.name} names in {backgrounds}; {again}, or give no backgrounds "
                        f"to use it as it is")
    layout = f"{folder}/{{{','.join(D646_FOLDERS)}}}"
    expected = [f"{fg.stem}_{i}.png" for fg, _ in pairs for i in range(D646_PER_FG)]
    for name in D646_FOLDERS:
        missing = [n for n in expected if not (_require(folder, name, layout) / n).is_file()]
        if missing:
            raise DataError(f"{folder}: partial composite: {name}/{missing[0]} missing "
                            f"({len(missing)} of {len(expected)}); {again}")
    triples = _pair_folders(*(folder / name for name in D646_FOLDERS))
    if len(triples) != len(expected):
        raise DataError(f"{folder}: holds {len(triples)} images, {len(expected)} expected; {again}")
    return triples


def _write_d646_composite(pairs, bg_files: list[Path], manifest: dict, folder: Path) -> None:
    """All of `folder` or nothing (outputs.whole_folder)."""
    try:
        with whole_folder(folder) as tmp:
            for name in D646_FOLDERS:
                (tmp / name).mkdir()
            with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:  # PIL releases the GIL
                jobs = [pool.submit(_d646_composite_one, k, fg, alpha, bg_files, tmp)
                        for k, (fg, alpha) in enumerate(pairs)]
                for job in jobs:
                    job.result()  # the first problem, in order
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    except OSError as e:
        raise DataError(f"{folder}: cannot write the composite ({e.strerror or e})") from None


def _d646_composite_one(k: int, fg_path: Path, alpha_path: Path, bg_files: list[Path], out: Path):
    """Foreground k over its 20 backgrounds -> out/{merged, alpha_copy, trimaps}/{stem}_{i}.png."""
    fg, alpha = load_image(fg_path), load_mask(alpha_path)
    if fg.shape[:2] != alpha.shape:
        raise DataError(f"{alpha_path}: size {alpha.shape[1]}x{alpha.shape[0]} differs from "
                        f"{fg_path} ({fg.shape[1]}x{fg.shape[0]})")
    first = {name: out / name / f"{fg_path.stem}_0.png" for name in D646_FOLDERS[1:]}
    Image.fromarray(alpha).save(first["alpha_copy"])
    Image.fromarray(make_trimap(alpha, D646_TRIMAP_RADIUS)).save(first["trimaps"])
    for i in range(D646_PER_FG):
        name = f"{fg_path.stem}_{i}.png"
        bg = load_image(bg_files[k * D646_PER_FG + i])
        Image.fromarray(composite(fg, alpha, bg)).save(out / "merged" / name)
        if i:  # the same alpha and trimap for every background
            for folder, path in first.items():
                shutil.copyfile(path, out / folder / name)


# ----------------------------------------------------------------------------------------------
# Pre-flight check
# ----------------------------------------------------------------------------------------------


TRIMAP_VALUES = (0, 128, 255)  # background, unknown, foreground: only exact 128 is scored


def check_trimap(trimap: np.ndarray, path) -> None:
    """A trimap holds 0, 128 and 255 only, with some 128 (an unknown region to score): one that
    marks unknown as 127 or 1, or was saved as JPEG, would be scored on another region, or none."""
    values = np.unique(trimap)
    if set(values.tolist()) <= set(TRIMAP_VALUES) and 128 in values:
        return
    shown = ", ".join(map(str, values[:6])) + (f", ... ({len(values)} values)"
                                                 if len(values) > 6 else "")
    raise DataError(f"{path}: a trimap must hold only 0, 128, 255 with some 128 (unknown); "
                    f"found {shown}")


def _check_one(files: tuple, matting: bool, trimaps: bool, above: int) -> None:
    sizes = []
    for k, path in enumerate(files):
        if k == 1:
            mask = load_mask(path)
            # the prompt box needs an object: gt > 128 for masks, alpha > 0 for mattes
            if not (mask > above).any():
                raise DataError(f"{path}: empty {'alpha' if matting else 'mask'} (no pixel > "
                                f"{above})")
            sizes.append(mask.shape[::-1])
        elif k == 2 and trimaps:
            trimap = load_mask(path)
            check_trimap(trimap, path)
            sizes.append(trimap.shape[::-1])
        else:
            sizes.append(_open(path).size)
    for path, size in zip(files[1:], sizes[1:]):
        if size != sizes[0]:
            raise DataError(
                f"{path}: size {size[0]}x{size[1]} differs from {files[0]} "
                f"({sizes[0][0]}x{sizes[0][1]})"
            )


def check_pairs(pairs, matting: bool = False, workers: int = 0, trimaps: bool = False,
                above: int = None) -> None:
    """Check a dataset before training starts; raise DataError on the first problem (in order).

    Every file of every (image, mask[, trimap]) tuple is fully decoded (this is what catches a
    truncated file), orientation applied; all sizes must be equal (width x height after EXIF
    rotation) and the mask must hold an object: a pixel above `above` (default gt > 128, or
    alpha > 0 when matting). With trimaps, the third file must be a trimap of 0 / 128 / 255 with
    an unknown region (check_trimap).
    Full decoding costs about as much as one pass over the data without the model: a few minutes
    for DIS5K's 3000 large images, spread over `workers` threads (PIL decodes without the GIL);
    0 = one per CPU core, up to 8.
    """
    above = (0 if matting else 128) if above is None else above
    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool:
        for _ in pool.map(lambda files: _check_one(tuple(files), matting, trimaps, above), pairs):
            pass


# ----------------------------------------------------------------------------------------------
# The splits by name: evaluate.py --split NAME, python readers.py check NAME ROOT
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    """A dataset split: how it is read, and how evaluate.py prompts and scores it."""

    kind: str  # "seg" (box, DIS metrics), "points" (1..10 points, IoU / boundary IoU), "matting"
    root_option: str  # the command-line option holding the dataset root
    reader: Callable  # root -> [(image, gt[, trimap])]
    trimap_region: bool = False  # matting: score only the trimap's unknown region
    band_column: bool = False  # matting: the whole image, and the trimap's unknown band beside it
    options: tuple = ()  # further command-line options the reader takes, as keyword arguments
    box_above: int = 0  # matting: the prompt is the box of alpha > box_above
    scored: bool = True  # evaluate.py takes it; False: a training set (readers.py check only)

    def check(self, pairs, workers: int = 0) -> None:
        """check_pairs as the split is prompted: an object above box_above (matting) or 128, and
        the trimaps checked where they are scored."""
        matting = self.kind == "matting"
        check_pairs(pairs, matting=matting, above=self.box_above if matting else None,
                    workers=workers, trimaps=self.trimap_region or self.band_column)


SPLITS = {
    "DIS-TR": Split("seg", "data", lambda root: dis_pairs(root, "DIS-TR"), scored=False),
    **{s: Split("seg", "data", lambda root, s=s: dis_pairs(root, s))
       for s in ("DIS-VD", "DIS-TE1", "DIS-TE2", "DIS-TE3", "DIS-TE4", "DIS-TE")},
    "ThinObject-5K-train": Split("seg", "thin", lambda root: thin_pairs(root, "train"),
                                 scored=False),
    "AIM-train": Split("matting", "matting", aim_train_pairs, scored=False),
    "COIFT": Split("points", "coift", coift_pairs),
    "ThinObject-5K": Split("points", "thin", lambda root: thin_pairs(root, "test")),
    "Composition-1K": Split("matting", "matting", composition1k_pairs, trimap_region=True),
    "AIM-500": Split("matting", "aim500", aim500_pairs),
    "AM-2K": Split("matting", "am2k", am2k_pairs),
    "P3M-500-NP": Split("matting", "p3m", p3m500np_pairs),
    "Distinctions-646": Split("matting", "d646", d646_test_triples, band_column=True,
                              options=("backgrounds",)),
    "RefMatte-RW100": Split("matting", "refmatte", refmatte_rw100_pairs, box_above=127),
    "folder-masks": Split("seg", "folder", folder_masks),
    "folder-mattes": Split("matting", "folder", folder_mattes),
}
ALIASES = {"aim": "AIM-train"}  # the name `python data.py check` took, still accepted


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="read a split and run check_pairs on it (pre-flight)")
    check.add_argument("split", choices=[*SPLITS, *ALIASES])
    check.add_argument("root", type=Path)
    check.add_argument("--backgrounds", type=Path,
                       help="Distinctions-646: VOC's JPEGImages, to composite the test set once")
    args = parser.parse_args(argv)
    return run_main(lambda: check_split(args), {DataError: 2})


def check_split(args) -> int:
    """`python readers.py check SPLIT ROOT`: read the split, check every file, say how many."""
    split = SPLITS[ALIASES.get(args.split, args.split)]
    pairs = split.reader(args.root, **{name: getattr(args, name) for name in split.options})
    split.check(pairs)
    print(f"ok: {len(pairs)} {args.split} {'triples' if len(pairs[0]) == 3 else 'pairs'} "
          f"in {args.root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
