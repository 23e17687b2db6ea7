"""Synthetic data for the miniature: the stand-in SAM's pre-training corpus and a fine-structure
benchmark in the official dataset layouts.

    python -m miniature.synthetic DIR [--seed 0]  # the benchmark below (deterministic from --seed)
    python -m miniature.synthetic make-toy DIR    # 3. the toy datasets: small and quick, for tests

Nothing here can use SAM's real training data (SA-1B) or the real benchmarks, so both are drawn
procedurally, every image a pure function of (seed, stream, index): `np.random.default_rng([seed,
stream, index])`. Each split has a stream of its own (STREAMS), so no two splits share a seed and
the pre-training corpus (stream 0, unbounded) never draws a benchmark image.

1. The corpus (`corpus_sample(seed, i)`), for pre-training the stand-in SAM (pretrain_sam.py):
   mostly solid objects (ellipses, rectangles, polygons, blobs, stars, letters, shapes with holes;
   some with thin appendages, a few sticks and outlines) with their own textures, 1-5 per image,
   later ones occluding earlier ones, on textured backgrounds (flat, gradients, stripes, checks,
   smooth noise) with clutter. Each sample is an image, a target object's visible mask and the
   prompts SAM is trained with: a noisy box, positive / negative points and a noisy mask input.
   The corpus is not made to defeat thin structures: the stand-in's limit there is its mask
   resolution (4G, a quarter of the frame), as the real SAM's is.

2. The benchmark (`write_benchmark`), images 176-320 px (the stand-in's frame is 256 px):

    DIS5K/DIS-TR, DIS-VD, DIS-TE1 /{im,gt}   segmentation of ten kinds in turn (THIN_KINDS, kind =
                                             index mod 10), from wires to solid objects with holes:
                                             lines from a hub, meshes in frames, wheels and rings
                                             with spokes, branching trees, bodies with thin legs,
                                             furniture and frames of bars, plants (leaves on
                                             stalks), objects with holes or slots, signs of letter
                                             strokes, fences. DIS-TE1: the thin-structure test
                                             split.
    AIM/Combined_Dataset/Training_set/{Adobe-licensed images,Other}/{fg,alpha}   matting foregrounds
        of eight kinds in turn (MATTE_KINDS, index mod 8): people (hair at the head), furry
        blobs, glass, plush toys, objects with soft borders, veils, foliage, lace; mostly opaque
        bodies, two transparent kinds (glass, veil), as AIM. Composited on the fly by train.py
        over backgrounds/
    AIM/Combined_Dataset/Test_set/Adobe-licensed images/{fg,alpha,merged,alpha_copy,trimaps}
        Composition-1K style: each test foreground over 4 test backgrounds, per Eq. (1)
    AM-2K/validation/{original,mask,trimap}  the matting validation set (evaluate.py --split AM-2K)
    backgrounds/                             training backgrounds (train.py --backgrounds)
    heldout/DIS5K/DIS-TE1/{im,gt}            the held-out segmentation kind (HELDOUT_THIN_KINDS:
                                             truss towers and bridges), 32 images
    heldout/AIM/Combined_Dataset/Test_set/Adobe-licensed images/{fg,alpha,merged,alpha_copy,trimaps}
        the held-out matte kind (HELDOUT_MATTE_KINDS: furred animals), 8 foregrounds x 4
        backgrounds. No other split draws a held-out kind: they test what training never saw,
        as the paper's zero-shot sets (COIFT, AM-2K) do
    solid/DIS5K/DIS-VD, DIS-TE1 /{im,gt}     plain solid shapes on textured backgrounds: the
                                             stand-in SAM's validation set (DIS-VD) and its
                                             held-out test (DIS-TE1)
    manifest.json                            seed, and for every split its stream and image count

Masks and alphas are drawn at SS = 4 times the resolution and box-filtered down: anti-aliased
edges and sub-pixel strands. A segmentation GT is the coverage > 0.5 (0 / 255).

3. The toy datasets (`make_toy`), small and quick, for the tests: DIS5K, AIM's Combined_Dataset,
   AIM-500 and backgrounds/ in the official layouts, images 160-320 px with one object each.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import math
import re
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

import outputs
from data import mask_to_box
from readers import composite, make_trimap

SS = 4  # supersampling of every drawn mask
SIZE_RANGE = (176, 320)  # image sides in pixels (the stand-in SAM's frame: 256)
MIN_CONTRAST = 60.0  # RGB distance between an object's base colour and the background beneath it
JPEG_QUALITY = 95  # DIS5K and AM-2K images are JPEG files, as distributed

# One random stream per use: sample i of a split is np.random.default_rng([seed, stream, i]).
STREAMS = {
    "corpus": 0,  # the pre-training corpus (unbounded)
    "solid/DIS-VD": 1, "solid/DIS-TE1": 2,
    "DIS-TR": 3, "DIS-VD": 4, "DIS-TE1": 5,
    "matting/train-fg": 6, "matting/backgrounds": 7,
    "matting/test-fg": 8, "matting/test-bg": 9,
    "matting/val-fg": 10, "matting/val-bg": 11,
    "heldout/DIS-TE1": 12, "heldout/test-fg": 13, "heldout/test-bg": 14,  # the held-out kinds
}
COUNTS = {  # images per split (Composition-1K: 16 foregrounds x COMP_BACKGROUNDS)
    "solid/DIS-VD": 48, "solid/DIS-TE1": 64,
    "DIS-TR": 320, "DIS-VD": 48, "DIS-TE1": 64,
    "matting/train-fg": 128, "matting/backgrounds": 64,
    "matting/test-fg": 16, "matting/val-fg": 48,
    "heldout/DIS-TE1": 32, "heldout/test-fg": 8,
}
COMP_BACKGROUNDS = 4  # backgrounds per Composition-1K-style test foreground (Adobe: 20)
THIN_TEST_SPLIT = "DIS-TE1"  # the thin-structure test split
COMP_SUBSET = "Adobe-licensed images"  # Composition-1K's folder in Combined_Dataset/Test_set
HELDOUT_COMP = f"heldout/AIM/Combined_Dataset/Test_set/{COMP_SUBSET}"  # the held-out mattes


def rng_for(seed: int, stream: str, i: int) -> np.random.Generator:
    return np.random.default_rng([seed, STREAMS[stream], i])


# ----------------------------------------------------------------------------------------------
# Drawing at SS x: unit-square outlines placed in the image, coverage maps
# ----------------------------------------------------------------------------------------------


class Layer:
    """An (h, w) coverage map drawn on an SS x canvas: ImageDraw in image pixels, box-filtered down.

    window (x0, y0, x1, y1), integer pixels: only that part of the image is drawn (the rest of the
    map is 0), which saves time for small objects. Mode "RGBA" draws in colours: fill (r, g, b,
    255).
    """

    def __init__(self, h: int, w: int, mode: str = "L", window: tuple = None) -> None:
        self.h, self.w = h, w
        self.x0, self.y0, x1, y1 = window or (0, 0, w, h)
        self.canvas = Image.new(mode, (SS * (x1 - self.x0), SS * (y1 - self.y0)), 0)
        self.draw = ImageDraw.Draw(self.canvas)

    def _xy(self, pts) -> list:
        return [(SS * (x - self.x0), SS * (y - self.y0)) for x, y in pts]

    def polygon(self, pts: np.ndarray, fill=255) -> None:
        self.draw.polygon(self._xy(pts), fill=fill)

    def line(self, pts: np.ndarray, width: float, fill=255) -> None:
        """A polyline `width` image pixels wide (at least one canvas pixel)."""
        self.draw.line(self._xy(pts), fill=fill, width=max(1, round(SS * width)), joint="curve")

    def disc(self, cx: float, cy: float, r: float, fill=255) -> None:
        (x0, y0), (x1, y1) = self._xy([(cx - r, cy - r), (cx + r, cy + r)])
        self.draw.ellipse([x0, y0, x1, y1], fill=fill)

    def merge(self, canvas: np.ndarray) -> None:
        """Draw a canvas-sized uint8 array over the layer (the maximum of the two)."""
        self.canvas = Image.fromarray(np.maximum(np.asarray(self.canvas), canvas))
        self.draw = ImageDraw.Draw(self.canvas)

    def _down(self) -> np.ndarray:
        """The canvas box-filtered to image pixels: (window h, window w[, 4]) float32, 0-255."""
        cw, ch = self.canvas.size
        return np.asarray(self.canvas.resize((cw // SS, ch // SS), Image.BOX), np.float32)

    def coverage(self) -> np.ndarray:
        """(h, w) float32 in [0, 1]: the fraction of each pixel drawn."""
        down = self._down()
        out = np.zeros((self.h, self.w), np.float32)
        out[self.y0:self.y0 + down.shape[0], self.x0:self.x0 + down.shape[1]] = down / 255.0
        return out

    def colour_and_coverage(self) -> tuple[np.ndarray, np.ndarray]:
        """RGBA layers over the whole image: the mean colour drawn in each pixel (h, w, 3) and the
        coverage (h, w)."""
        rgba = self._down()
        return rgba[..., :3], rgba[..., 3] / 255.0


class Placement:
    """Where an object sits: centre (cx, cy), half-sizes (rx, ry) and rotation theta, in pixels."""

    def __init__(self, cx: float, cy: float, rx: float, ry: float, theta: float) -> None:
        self.cx, self.cy, self.rx, self.ry, self.theta = cx, cy, rx, ry, theta

    @classmethod
    def random(cls, rng: np.random.Generator, h: int, w: int, lo: float, hi: float) -> Placement:
        """An object U(lo, hi) x the image's shorter side in size, aspect up to 1:2, inside."""
        size = rng.uniform(lo, hi) * min(h, w) / 2
        aspect = np.exp(rng.uniform(-0.35, 0.35))
        rx, ry = size * aspect, size / aspect
        reach = max(rx, ry)  # a rotated object stays within its circumscribed square
        cx = rng.uniform(min(reach, w / 2), max(w - reach, w / 2))
        cy = rng.uniform(min(reach, h / 2), max(h - reach, h / 2))
        return cls(cx, cy, rx, ry, rng.uniform(0, 2 * np.pi))

    def __call__(self, unit: np.ndarray) -> np.ndarray:
        """(N, 2) points of the unit square [-1, 1]^2 -> (N, 2) image xy: scale, rotate, move."""
        c, s = np.cos(self.theta), np.sin(self.theta)
        x, y = unit[:, 0] * self.rx, unit[:, 1] * self.ry
        return np.stack([self.cx + c * x - s * y, self.cy + s * x + c * y], axis=1)

    @property
    def scale(self) -> float:
        return min(self.rx, self.ry)

    def window(self, h: int, w: int, extent: float, margin: float = 6.0) -> tuple:
        """(x0, y0, x1, y1) integer pixels, inside the image, holding every point within
        extent x max(rx, ry) + margin of the centre."""
        r = extent * max(self.rx, self.ry) + margin
        x0 = int(np.clip(np.floor(self.cx - r), 0, w - 1))
        x1 = int(np.clip(np.ceil(self.cx + r), 1, w))
        y0 = int(np.clip(np.floor(self.cy - r), 0, h - 1))
        y1 = int(np.clip(np.ceil(self.cy + r), 1, h))
        return x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)


def _circle(n: int = 72) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([np.cos(t), np.sin(t)], axis=1)


def _radial(r: np.ndarray) -> np.ndarray:
    """A closed outline with radius r[k] at angle 2 pi k / len(r)."""
    return _circle(len(r)) * r[:, None]


def _outline(rng: np.random.Generator, kind: str) -> np.ndarray:
    """(N, 2) closed outline in the unit square of a solid shape."""
    if kind == "ellipse":
        return _circle()
    if kind == "rect":
        return np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64)
    if kind == "polygon":  # 3-8 vertices at jittered, evenly spread angles: convex or not
        n = int(rng.integers(3, 9))
        t = (np.arange(n) + rng.uniform(-0.35, 0.35, n)) * 2 * np.pi / n + rng.uniform(0, 2 * np.pi)
        r = rng.uniform(0.55, 1.0, n)
        return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)
    if kind == "blob":  # r(t) = 1 + sum_k a_k cos(k t + phi_k), k = 2..5
        t = np.linspace(0, 2 * np.pi, 96, endpoint=False)
        r = np.ones_like(t)
        for k in range(2, 6):
            r += rng.uniform(0, 0.5 / k) * np.cos(k * t + rng.uniform(0, 2 * np.pi))
        return _radial(r / r.max())
    if kind == "star":
        n = int(rng.integers(4, 9))
        r = np.tile([1.0, rng.uniform(0.35, 0.6)], n)
        return _radial(r)
    raise ValueError(f"unknown outline {kind!r}")


def _arc(a0: float, a1: float, r: float = 0.8, n: int = 16) -> list:
    t = np.linspace(np.radians(a0), np.radians(a1), n)
    return list(zip(r * np.cos(t), r * np.sin(t)))


LETTERS = {  # strokes in the unit square, y down
    "L": [[(-0.6, -1), (-0.6, 1), (0.6, 1)]],
    "T": [[(-0.8, -1), (0.8, -1)], [(0, -1), (0, 1)]],
    "H": [[(-0.7, -1), (-0.7, 1)], [(0.7, -1), (0.7, 1)], [(-0.7, 0), (0.7, 0)]],
    "E": [[(0.7, -1), (-0.6, -1), (-0.6, 1), (0.7, 1)], [(-0.6, 0), (0.5, 0)]],
    "F": [[(0.7, -1), (-0.6, -1), (-0.6, 1)], [(-0.6, 0), (0.5, 0)]],
    "X": [[(-0.8, -1), (0.8, 1)], [(0.8, -1), (-0.8, 1)]],
    "V": [[(-0.8, -1), (0, 1), (0.8, -1)]],
    "A": [[(-0.8, 1), (0, -1), (0.8, 1)], [(-0.45, 0.2), (0.45, 0.2)]],
    "K": [[(-0.6, -1), (-0.6, 1)], [(0.7, -1), (-0.6, 0.1), (0.7, 1)]],
    "N": [[(-0.7, 1), (-0.7, -1), (0.7, 1), (0.7, -1)]],
    "Z": [[(-0.7, -1), (0.7, -1), (-0.7, 1), (0.7, 1)]],
    "Y": [[(-0.8, -1), (0, 0)], [(0.8, -1), (0, 0), (0, 1)]],
    "C": [_arc(40, 320)],
    "U": [[(-0.7, -1)] + [(x, y + 0.3) for x, y in _arc(180, 0, 0.7)] + [(0.7, -1)]],
}


def draw_solid(rng: np.random.Generator, layer: Layer, p: Placement, kind: str) -> None:
    """One solid object: an outline shape (with a hole in 20%), or a letter of thick strokes."""
    if kind == "letter":
        width = rng.uniform(0.28, 0.45) * p.scale
        for stroke in LETTERS[str(rng.choice(list(LETTERS)))]:
            layer.line(p(np.array(stroke, dtype=np.float64)), width)
        return
    outline = _outline(rng, kind)
    layer.polygon(p(outline))
    if kind != "star" and rng.random() < 0.2:  # a hole: the same outline kind, shrunk, off-centre
        hole = _outline(rng, kind) * rng.uniform(0.3, 0.55) + rng.uniform(-0.15, 0.15, 2)
        layer.polygon(p(hole), fill=0)


def draw_appendages(rng: np.random.Generator, layer: Layer, p: Placement) -> None:
    """1-3 thin parts (handles, antennae, stalks), 2-5 px wide, growing out of an object."""
    for _ in range(int(rng.integers(1, 4))):
        a = rng.uniform(0, 2 * np.pi)
        length = rng.uniform(1.4, 2.0)
        bend = rng.normal(0, 0.3)
        t = np.linspace(0, 1, 4)[:, None]
        direction = np.array([np.cos(a), np.sin(a)])
        normal = np.array([-direction[1], direction[0]])
        unit = t * length * direction + bend * np.sin(np.pi * t) * normal
        layer.line(p(unit), rng.uniform(2.0, 5.0))


SOLID_KINDS = ("ellipse", "rect", "polygon", "blob", "star", "letter")


# ----------------------------------------------------------------------------------------------
# Textures and colours
# ----------------------------------------------------------------------------------------------


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """(h, w) float32 smooth noise in about [-1, 1]: a cells x cells random grid, upsampled
    bicubically."""
    grid = rng.uniform(0, 255, (cells, cells)).astype(np.uint8)
    return np.asarray(Image.fromarray(grid).resize((w, h), Image.BICUBIC), np.float32) / 127.5 - 1


def texture(rng: np.random.Generator, h: int, w: int, base: np.ndarray, amp: float) -> np.ndarray:
    """(h, w, 3) float32: a base colour with one pattern (flat, gradient, stripes, checks or smooth
    noise) of amplitude up to `amp` along a random direction in RGB."""
    kind = rng.choice(["flat", "gradient", "stripes", "checks", "noise"])
    colour = rng.uniform(-1, 1, 3).astype(np.float32) * amp
    if kind == "flat":
        return np.broadcast_to(base.astype(np.float32), (h, w, 3)).copy()
    if kind == "noise":
        pattern = _smooth_noise(rng, h, w, int(rng.integers(3, 17)))
    else:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        if kind == "gradient":
            a = rng.uniform(0, 2 * np.pi)
            pattern = (xx * np.cos(a) + yy * np.sin(a)) / max(h, w)
        elif kind == "stripes":
            a, period = rng.uniform(0, np.pi), rng.uniform(5, 40)
            phase = 2 * np.pi * (xx * np.cos(a) + yy * np.sin(a)) / period
            pattern = np.sin(phase + rng.uniform(0, 7))
        else:
            cell = rng.uniform(6, 40)
            pattern = 2.0 * ((np.floor(xx / cell) + np.floor(yy / cell)) % 2) - 1
    return base.astype(np.float32) + pattern[..., None] * colour


def background(rng: np.random.Generator, h: int, w: int, clutter: float) -> np.ndarray:
    """(h, w, 3) float32 textured background; with probability `clutter`, 5-25 small distractors
    (ellipses, rectangles, polygons, short lines) in colours of their own."""
    image = texture(rng, h, w, rng.uniform(20, 235, 3), rng.uniform(10, 60))
    if rng.random() < clutter:
        layer = Layer(h, w, mode="RGBA")
        for _ in range(int(rng.integers(5, 26))):
            p = Placement.random(rng, h, w, 0.04, 0.15)
            colour = tuple(int(c) for c in rng.integers(0, 256, 3)) + (255,)
            if rng.random() < 0.3:
                layer.line(p(np.array([[-1.0, 0.0], [1.0, 0.0]])), rng.uniform(1, 4), fill=colour)
            else:
                kind = str(rng.choice(["ellipse", "rect", "polygon"]))
                layer.polygon(p(_outline(rng, kind)), colour)
        colours, a = layer.colour_and_coverage()
        image = a[..., None] * colours + (1 - a[..., None]) * image
    return image


def object_colour(rng: np.random.Generator, under: np.ndarray) -> np.ndarray:
    """An object's base colour at least MIN_CONTRAST from the mean colour `under` it (or the
    farthest of 20 tries)."""
    best, best_d = None, -1.0
    for _ in range(20):
        c = rng.uniform(0, 255, 3)
        d = float(np.linalg.norm(c - under))
        if d > best_d:
            best, best_d = c, d
        if d >= MIN_CONTRAST:
            break
    return best


def paint(rng: np.random.Generator, image: np.ndarray, alpha: np.ndarray, amp: float) -> np.ndarray:
    """image with an object of coverage alpha painted over it in a texture of its own (drawn over
    the object's bounding box only)."""
    rows, cols = np.flatnonzero(alpha.any(axis=1)), np.flatnonzero(alpha.any(axis=0))
    if rows.size == 0:
        return image
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    a, under = alpha[box][..., None], image[box]
    inside = a[..., 0] > 0.5
    mean_under = under[inside].mean(axis=0) if inside.any() else under.reshape(-1, 3).mean(axis=0)
    fg = texture(rng, *a.shape[:2], object_colour(rng, mean_under), amp)
    image = image.copy()
    image[box] = a * fg + (1 - a) * under
    return image


def rounded_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def with_noise(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """(h, w, 3) float32 -> uint8 with pixel noise of std U(2, 10) (a camera's)."""
    return rounded_uint8(image + rng.uniform(2, 10) * rng.standard_normal(image.shape, np.float32))


def as_jpeg(image: np.ndarray) -> np.ndarray:
    """The image as its JPEG file holds it (encoded as _save encodes it, decoded)."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=JPEG_QUALITY)
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB"))


def image_size(rng: np.random.Generator) -> tuple[int, int]:
    h, w = rng.integers(SIZE_RANGE[0], SIZE_RANGE[1] + 1, 2)
    return int(h), int(w)


# ----------------------------------------------------------------------------------------------
# 1. The pre-training corpus
# ----------------------------------------------------------------------------------------------

NUM_PROMPT_POINTS = 8  # points per target: the first is positive, the rest positive or negative
BOX_NOISE, BOX_NOISE_MAX = 0.1, 20 / 1024  # SAM: std 10% of the box side, at most 20 px of 1024


def corpus_object(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """(h, w) coverage of one corpus object: 90% solid (15% of those with thin appendages), 10% a
    stick or an outline."""
    p = Placement.random(rng, h, w, 0.15, 0.65)
    r = rng.random()
    if r < 0.05:  # a stick, 2-6 px wide
        layer = Layer(h, w, window=p.window(h, w, 1.0))
        layer.line(p(np.array([[-1.0, 0.0], [1.0, 0.0]])), rng.uniform(2.0, 6.0))
    elif r < 0.10:  # an outline 2-6 px wide
        layer = Layer(h, w, window=p.window(h, w, 1.5))
        kind = str(rng.choice(["ellipse", "rect", "polygon", "blob"]))
        outline = p(_outline(rng, kind))
        layer.line(np.concatenate([outline, outline[:1]]), rng.uniform(2.0, 6.0))
    else:
        appendages = rng.random() < 0.15
        layer = Layer(h, w, window=p.window(h, w, 2.4 if appendages else 1.5))
        draw_solid(rng, layer, p, str(rng.choice(SOLID_KINDS)))
        if appendages:
            draw_appendages(rng, layer, p)
    return layer.coverage()


def corpus_scene(seed: int, i: int) -> tuple[np.ndarray, list[np.ndarray], np.random.Generator]:
    """Corpus image i: (H, W, 3) uint8, the visible masks (H, W) bool of the objects that can be
    targets (visible area >= 64 px and >= 25% of the object), and the generator, to draw prompts."""
    rng = rng_for(seed, "corpus", i)
    h, w = image_size(rng)
    image = background(rng, h, w, clutter=0.5)
    alphas = []
    for _ in range(int(rng.choice([1, 2, 3, 4, 5], p=[0.2, 0.25, 0.25, 0.15, 0.15]))):
        alphas.append(corpus_object(rng, h, w))
        image = paint(rng, image, alphas[-1], rng.uniform(0, 40))
    masks, above = [], np.ones((h, w), np.float32)
    for a in reversed(alphas):  # visible coverage: a_j times (1 - a_k) for every k drawn later
        visible = a * above > 0.5
        if visible.sum() >= max(64, 0.25 * (a > 0.5).sum()):
            masks.append(visible)
        above *= 1 - a
    if not masks:  # the last object drawn is whole; keep the largest visible part
        masks = [alphas[-1] >= alphas[-1].max() * 0.5]
    image = with_noise(rng, image)
    return (as_jpeg(image) if rng.random() < 0.5 else image), masks, rng  # half of them JPEG files


def noisy_box(rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
    """(4,) float32 xyxy: the tight box, each coordinate moved by N(0, (10% of the side)^2) capped
    at 20 px of a 1024 image (SAM's training noise), clipped to the image."""
    h, w = mask.shape
    box = mask_to_box(mask).astype(np.float64)
    side = np.array([box[2] - box[0] + 1, box[3] - box[1] + 1] * 2)
    cap = BOX_NOISE_MAX * max(h, w)
    noise = np.clip(rng.normal(0, 1, 4) * BOX_NOISE * side, -cap, cap)
    b = np.clip(box + noise, 0, [w - 1, h - 1] * 2)
    x0, x1 = sorted(b[0::2])
    y0, y1 = sorted(b[1::2])
    return np.array([x0, y0, x1, y1], np.float32)


def prompt_points(rng: np.random.Generator, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(NUM_PROMPT_POINTS, 2) float32 xy pixel indices and (NUM_PROMPT_POINTS,) int64 labels.

    The first point is positive, drawn uniformly from the mask (SAM's first click); each later one
    is positive (from the mask) or negative (from the box grown by 20% outside the mask, or anywhere
    outside it), with equal chance."""
    h, w = mask.shape
    x0, y0, x1, y1 = mask_to_box(mask)
    gx, gy = 0.2 * (x1 - x0 + 1), 0.2 * (y1 - y0 + 1)
    near = np.zeros_like(mask)
    near[max(0, int(y0 - gy)):int(y1 + gy) + 1, max(0, int(x0 - gx)):int(x1 + gx) + 1] = True
    near &= ~mask
    outside = near if near.any() else ~mask
    labels = np.concatenate([[1], rng.integers(0, 2, NUM_PROMPT_POINTS - 1)]).astype(np.int64)
    if not outside.any():  # the object fills the image: no negative point possible
        labels[:] = 1
    points = np.zeros((NUM_PROMPT_POINTS, 2), np.float32)
    for label, region in ((1, mask), (0, outside)):
        ys, xs = np.nonzero(region)
        picked = rng.integers(len(xs), size=int((labels == label).sum())) if len(xs) else []
        points[labels == label] = np.stack([xs[picked], ys[picked]], axis=1)
    return points, labels


def noisy_mask(rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
    """(H, W) bool: the mask as an earlier, imperfect prediction of it (SAM's mask input): grown or
    shrunk by up to 3 px, its boundary roughened by smooth noise, 0-2 blobs added or cut near it."""
    h, w = mask.shape
    m = mask.astype(np.float32)
    r = int(rng.integers(-3, 4))
    if r > 0:
        m = ndimage.binary_dilation(mask, iterations=r).astype(np.float32)
    elif r < 0:
        eroded = ndimage.binary_erosion(mask, iterations=-r)
        m = eroded.astype(np.float32) if eroded.any() else m
    m = ndimage.gaussian_filter(m, rng.uniform(0.5, 3.0)) + 0.3 * _smooth_noise(rng, h, w, 12)
    noisy = m > 0.5
    x0, y0, x1, y1 = mask_to_box(mask)
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(int(rng.integers(0, 3))):
        cx, cy = rng.uniform(x0, x1 + 1), rng.uniform(y0, y1 + 1)
        rx, ry = rng.uniform(0.05, 0.2, 2) * [x1 - x0 + 1, y1 - y0 + 1] + 1
        blob = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1
        noisy = noisy | blob if rng.random() < 0.5 else noisy & ~blob
    return noisy


def corpus_sample(seed: int, i: int, n_targets: int = 1) -> dict:
    """Corpus sample i, a pure function of (seed, i).

    Returns {"image": (H, W, 3) uint8, "targets": [up to n_targets dicts, distinct objects]}, each
    target {"mask": (H, W) bool (the visible part), "box": (4,) float32 noisy xyxy, "points":
    (NUM_PROMPT_POINTS, 2) float32 xy, "point_labels": (NUM_PROMPT_POINTS,) int64 1 / 0,
    "mask_input": (H, W) bool noisy mask}; coordinates are pixel indices of the image.
    """
    image, masks, rng = corpus_scene(seed, i)
    targets = []
    for k in rng.permutation(len(masks))[:n_targets]:
        mask = masks[k]
        points, labels = prompt_points(rng, mask)
        targets.append({"mask": mask, "box": noisy_box(rng, mask), "points": points,
                        "point_labels": labels, "mask_input": noisy_mask(rng, mask)})
    return {"image": image, "targets": targets}


# ----------------------------------------------------------------------------------------------
# 2a. Held-out solid objects (the stand-in SAM's validation and test)
# ----------------------------------------------------------------------------------------------


def solid_pair(seed: int, split: str, i: int) -> tuple[np.ndarray, np.ndarray]:
    """Pair i of a solid split ("DIS-VD" or "DIS-TE1") as its files hold it: image (H, W, 3) uint8
    (after the JPEG round trip) and GT (H, W) uint8 0 / 255."""
    image, gt = solid_image(seed, split, i)
    return as_jpeg(image), gt


def solid_image(seed: int, split: str, i: int) -> tuple[np.ndarray, np.ndarray]:
    """A plain solid shape (no appendages, no occluder) on a textured background: the image before
    its JPEG encoding, and the GT."""
    rng = rng_for(seed, f"solid/{split}", i)
    h, w = image_size(rng)
    image = background(rng, h, w, clutter=0.0)
    layer = Layer(h, w)
    draw_solid(rng, layer, Placement.random(rng, h, w, 0.3, 0.7), SOLID_KINDS[i % len(SOLID_KINDS)])
    alpha = layer.coverage()
    image = paint(rng, image, alpha, rng.uniform(0, 40))
    return with_noise(rng, image), np.where(alpha > 0.5, 255, 0).astype(np.uint8)


# ----------------------------------------------------------------------------------------------
# 2b. Thin structures (DIS5K layout)
# ----------------------------------------------------------------------------------------------


def _walk(rng, start, angle, steps, step, drift, bounds) -> np.ndarray:
    """A random-walk polyline from start: `steps` steps of length `step`, the heading drifting by
    N(0, drift^2) at each."""
    pts = [np.asarray(start, np.float64)]
    for _ in range(steps):
        angle += rng.normal(0, drift)
        nxt = pts[-1] + step * np.array([np.cos(angle), np.sin(angle)])
        pts.append(np.clip(nxt, bounds[0], bounds[1]))
    return np.array(pts)


def thin_lines(rng, layer: Layer, p: Placement) -> None:
    """3-7 wandering strands, 1.5-3.5 px wide, from a small hub (a dandelion, a tangle of wire)."""
    layer.disc(p.cx, p.cy, rng.uniform(2, 4))
    lo, hi = p(np.array([[-1.0, -1.0]]))[0], p(np.array([[1.0, 1.0]]))[0]
    bounds = (np.minimum(lo, hi), np.maximum(lo, hi))
    for _ in range(int(rng.integers(3, 8))):
        pts = _walk(rng, (p.cx, p.cy), rng.uniform(0, 2 * np.pi), int(rng.integers(6, 13)),
                    rng.uniform(0.12, 0.2) * p.scale, 0.35, bounds)
        layer.line(pts, rng.uniform(1.5, 3.5))


def thin_mesh(rng, layer: Layer, p: Placement) -> None:
    """A net of 1.5-3 px lines, 7-18 px apart, clipped to a rectangle or an ellipse, in a frame
    2-5 px wide (a fence panel, a racket)."""
    h, w = layer.h, layer.w
    grid = Layer(h, w)
    step, width, a = rng.uniform(7, 18), rng.uniform(1.5, 3.0), rng.uniform(0, np.pi)
    diag = np.hypot(h, w)
    for angle in (a, a + rng.choice([np.pi / 2, np.pi / 3])):
        d, n = np.array([np.cos(angle), np.sin(angle)]), np.array([-np.sin(angle), np.cos(angle)])
        for off in np.arange(-diag, diag, step):
            c = np.array([w / 2, h / 2]) + off * n
            grid.line(np.array([c - diag * d, c + diag * d]), width)
    outline = p(_outline(rng, str(rng.choice(["rect", "ellipse"]))))
    region = Layer(h, w)
    region.polygon(outline)
    layer.merge(np.minimum(np.asarray(grid.canvas), np.asarray(region.canvas)))  # the net, clipped
    layer.line(np.concatenate([outline, outline[:1]]), rng.uniform(2.0, 5.0))


def _wheel(rng, layer: Layer, cx: float, cy: float, r: float) -> None:
    """A rim 2-5 px wide, a hub and 6-24 spokes 1.5-2.5 px wide."""
    layer.line(np.concatenate([_circle(), _circle()[:1]]) * r + [cx, cy], rng.uniform(2.0, 5.0))
    layer.disc(cx, cy, rng.uniform(2.5, 5))
    width = rng.uniform(1.5, 2.5)
    spokes = np.linspace(0, 2 * np.pi, int(rng.integers(6, 25)), endpoint=False) + rng.uniform(0, 1)
    for t in spokes:
        layer.line(np.array([[cx, cy], [cx + r * np.cos(t), cy + r * np.sin(t)]]), width)


def thin_rings(rng, layer: Layer, p: Placement) -> None:
    """A wheel, two wheels joined by a frame (a bicycle), or concentric rings joined by bars."""
    kind = rng.choice(["wheel", "bicycle", "concentric"])
    if kind == "wheel":
        _wheel(rng, layer, p.cx, p.cy, p.scale)
    elif kind == "bicycle":
        r = p.scale * 0.5
        c, s = np.cos(p.theta) * r * 1.15, np.sin(p.theta) * r * 0.3
        a, b = np.array([p.cx - c, p.cy - s]), np.array([p.cx + c, p.cy + s])
        for cx, cy in (a, b):
            _wheel(rng, layer, cx, cy, r)
        top = (a + b) / 2 + np.array([0.0, -r * rng.uniform(0.8, 1.2)])
        layer.line(np.array([a, top, b, (a + b) / 2, a]), rng.uniform(2.0, 4.0))
    else:
        width = rng.uniform(1.5, 3.5)
        radii = np.sort(rng.uniform(0.3, 1.0, int(rng.integers(2, 5))))
        ring = np.concatenate([_circle(), _circle()[:1]])
        for r in radii:
            layer.line(p(ring * r), width)
        for t in rng.uniform(0, 2 * np.pi, int(rng.integers(2, 6))):
            layer.line(p(np.array([[0.0, 0.0], [np.cos(t), np.sin(t)]]) * radii[-1]), width)


def thin_branch(rng, layer: Layer, p: Placement) -> None:
    """A branching tree: a trunk 4-8 px wide, each branch splitting into 2-3 thinner ones
    (x0.55-0.75 in width, x0.6-0.8 in length) down to 1.5 px."""
    start = p(np.array([[0.0, 1.0]]))[0]
    stack = [(start, p.theta - np.pi / 2, 0.8 * p.scale, rng.uniform(4.0, 8.0))]
    while stack:
        xy, angle, length, width = stack.pop()
        pts = _walk(rng, xy, angle, 3, length / 3, 0.15, (np.array([0.0, 0.0]),
                                                         np.array([layer.w - 1.0, layer.h - 1.0])))
        layer.line(pts, width)
        child = width * rng.uniform(0.55, 0.75)
        if child >= 1.5:
            for _ in range(int(rng.integers(2, 4))):
                turn, shorter = rng.uniform(-0.9, 0.9), rng.uniform(0.6, 0.8)
                stack.append((pts[-1], angle + turn, length * shorter, child))


def thin_creature(rng, layer: Layer, p: Placement) -> None:
    """A solid body (an insect) with 6-8 legs and two antennae, 1.5-3 px wide."""
    body = Placement(p.cx, p.cy, 0.45 * p.rx, 0.25 * p.ry, p.theta)
    layer.polygon(body(_circle()))
    head = Placement(*body(np.array([[1.25, 0.0]]))[0], 0.25 * p.ry, 0.2 * p.ry, p.theta)
    layer.polygon(head(_circle()))
    width = rng.uniform(1.5, 3.0)
    for k in range(int(rng.integers(3, 5))):
        x = -0.6 + 1.2 * k / 3
        for side in (-1, 1):
            knee = [x + rng.uniform(-0.2, 0.2), side * rng.uniform(1.5, 2.5)]
            foot = [x + rng.uniform(-0.8, 0.8), side * rng.uniform(2.8, 3.8)]
            layer.line(body(np.array([[x, 0.0], knee, foot])), width)
    for side in (-1, 1):
        tip = [rng.uniform(2.5, 3.5), side * rng.uniform(0.8, 2.0)]
        layer.line(body(np.array([[1.4, 0.0], [2.0, side * 0.5], tip])), rng.uniform(1.5, 2.0))


def _upright(p: Placement, rng: np.random.Generator, tilt: float = 0.2) -> Placement:
    """p standing up (things that stand: chairs, ladders, plants, towers, people), tilted by
    N(0, tilt^2) radians."""
    return Placement(p.cx, p.cy, p.rx, p.ry, rng.normal(0, tilt))


def _bars(layer: Layer, p: Placement, bars: list, width: float) -> None:
    """Straight bars given as unit-square point lists, all `width` px wide."""
    for bar in bars:
        layer.line(p(np.array(bar, dtype=np.float64)), width)


def thin_frame(rng, layer: Layer, p: Placement) -> None:
    """Furniture and frames of solid bars 2-6 px wide meeting at joints: a ladder, a chair, a stool
    or a window frame with glazing bars."""
    p = _upright(p, rng)
    kind, width = rng.choice(["ladder", "chair", "stool", "window"]), rng.uniform(2.0, 6.0)
    if kind == "ladder":
        half = rng.uniform(0.25, 0.45)
        rungs = np.linspace(-0.85, 0.85, int(rng.integers(4, 9)))
        _bars(layer, p, [[(-half, -1), (-half, 1)], [(half, -1), (half, 1)]], width)
        _bars(layer, p, [[(-half, y), (half, y)] for y in rungs], width * rng.uniform(0.6, 1.0))
    elif kind == "chair":  # side on: the back leg rising into the back, the seat, a front leg,
        # a stretcher, and three short cross-bars on the back
        seat, back = rng.uniform(-0.1, 0.3), rng.uniform(-0.7, -0.4)
        layer.polygon(p(np.array([[-0.55, seat - 0.06], [0.6, seat - 0.06], [0.6, seat + 0.06],
                                  [-0.55, seat + 0.06]])))
        legs = [[(-0.5, -1), (-0.5, 1)], [(0.55, seat), (0.6, 1)], [(-0.5, 0.65), (0.6, 0.65)]]
        slats = [[(-0.5, y), (-0.45 + 0.1 * (y + 1), y)] for y in np.linspace(-0.9, back, 3)]
        _bars(layer, p, legs, width)
        _bars(layer, p, slats, width * 0.7)
    elif kind == "stool":  # a top, three splayed legs and a stretcher
        layer.polygon(p(np.array([[-0.6, -1], [0.6, -1], [0.6, -0.8], [-0.6, -0.8]])))
        legs = [[(x, -0.85), (1.4 * x, 1)] for x in (-0.5, 0.0, 0.5)]
        _bars(layer, p, legs + [[(-0.62, 0.3), (0.62, 0.3)]], width)
    else:  # a window: the frame and a grid of glazing bars
        _bars(layer, p, [[(-1, -1), (1, -1), (1, 1), (-1, 1), (-1, -1)]], width)
        for x in np.linspace(-1, 1, int(rng.integers(2, 5)) + 1)[1:-1]:
            _bars(layer, p, [[(x, -1), (x, 1)]], width * 0.6)
        for y in np.linspace(-1, 1, int(rng.integers(2, 5)) + 1)[1:-1]:
            _bars(layer, p, [[(-1, y), (1, y)]], width * 0.6)


def _leaf(layer: Layer, base: np.ndarray, angle: float, length: float, breadth: float) -> None:
    """A solid leaf: a lens of `length` x `breadth` px from `base` along `angle`."""
    t = np.linspace(0, 1, 12)
    d, n = np.array([np.cos(angle), np.sin(angle)]), np.array([-np.sin(angle), np.cos(angle)])
    side = np.sin(np.pi * t)[:, None] * breadth / 2 * n
    along = t[:, None] * length * d + base
    layer.polygon(np.concatenate([along + side, (along - side)[::-1]]))


def _plant(rng, layer: Layer, p: Placement, stem: float, stalk: float, leaf: tuple,
           leaves: int) -> None:
    """1-3 bending stems `stem` px wide from the bottom, each with about `leaves` leaves on stalks
    `stalk` px wide, alternately left and right; leaf sizes leaf = (lo, hi) x the object's size."""
    base = p(np.array([[0.0, 1.0]]))[0]
    bounds = (np.array([0.0, 0.0]), np.array([layer.w - 1.0, layer.h - 1.0]))
    for _ in range(int(rng.integers(1, 4))):
        heading = p.theta - np.pi / 2 + rng.normal(0, 0.35)
        pts = _walk(rng, base, heading, 8, 0.22 * p.scale, 0.12, bounds)
        layer.line(pts, stem)
        for k in range(int(rng.integers(leaves // 2, leaves + 1))):
            at = pts[1 + int(rng.integers(0, len(pts) - 1))]
            a = heading + (1 if k % 2 else -1) * rng.uniform(0.5, 1.3)
            reach = rng.uniform(0.1, 0.3) * p.scale
            tip = at + reach * np.array([np.cos(a), np.sin(a)])
            layer.line(np.array([at, tip]), stalk)
            _leaf(layer, tip, a + rng.normal(0, 0.3), rng.uniform(*leaf) * p.scale,
                  rng.uniform(0.25, 0.45) * leaf[1] * p.scale)


def thin_plant(rng, layer: Layer, p: Placement) -> None:
    """A potted-plant stem or a weed: stems 2-4 px wide, leaves on stalks 1.5-2.5 px wide (solid
    leaves, thin stalks)."""
    _plant(rng, layer, _upright(p, rng), rng.uniform(2.0, 4.0), rng.uniform(1.5, 2.5),
           (0.15, 0.35), 10)


def thin_holes(rng, layer: Layer, p: Placement) -> None:
    """A solid object with holes or slots (low complexity, as DIS5K's simple objects): a
    perforated plate, a vent with slots, or a solid shape with a ring handle."""
    kind = rng.choice(["perforated", "slots", "handle"])
    outline = _outline(rng, str(rng.choice(["rect", "ellipse", "blob"])))
    inner = Placement(p.cx, p.cy, 0.7 * p.rx, 0.7 * p.ry, p.theta)
    layer.polygon(inner(outline))
    if kind == "perforated":  # a grid of round holes 3-9 px across
        r = rng.uniform(1.5, 4.5)
        step = 2 * r + rng.uniform(3, 8)
        for x in np.arange(-0.6, 0.6, step / inner.rx):
            for y in np.arange(-0.6, 0.6, step / inner.ry):
                layer.disc(*inner(np.array([[x, y]]))[0], r, fill=0)
    elif kind == "slots":  # parallel slots 2-5 px wide
        width = rng.uniform(2.0, 5.0)
        for y in np.linspace(-0.55, 0.55, int(rng.integers(3, 8))):
            layer.line(inner(np.array([[-0.5, y], [0.5, y]])), width, fill=0)
    else:  # a ring handle on top, 3-6 px wide, and one hole
        ring = np.concatenate([_circle(), _circle()[:1]]) * 0.35 + [0.0, -1.25]
        layer.line(inner(ring), rng.uniform(3.0, 6.0))
        layer.polygon(inner(_circle() * rng.uniform(0.15, 0.3)), fill=0)


def thin_text(rng, layer: Layer, p: Placement) -> None:
    """A sign: a word of 3-6 letters in strokes 2-4 px wide, in a frame 2-5 px wide in half of
    them, on a pole in a third."""
    p = _upright(p, rng, 0.15)
    n = int(rng.integers(3, 7))
    width, size = rng.uniform(2.0, 4.0), 0.9 / n
    for k, letter in enumerate(rng.choice(list(LETTERS), n)):
        x = -0.9 + (2 * k + 1) * size
        for stroke in LETTERS[str(letter)]:
            pts = np.array(stroke, dtype=np.float64) * [0.8 * size, 0.35] + [x, -0.2]
            layer.line(p(pts), width)
    if rng.random() < 0.5:
        _bars(layer, p, [[(-1, -0.7), (1, -0.7), (1, 0.3), (-1, 0.3), (-1, -0.7)]],
              rng.uniform(2.0, 5.0))
    if rng.random() < 0.33:
        _bars(layer, p, [[(0, 0.3), (0, 1)]], rng.uniform(3.0, 6.0))


def thin_fence(rng, layer: Layer, p: Placement) -> None:
    """A fence or railing: 1-3 rails and pickets 2-5 px wide every 6-16 px, with pointed tops in
    half of them, between two posts."""
    p = _upright(p, rng, 0.15)
    rails = np.sort(rng.uniform(-0.6, 0.8, int(rng.integers(1, 4))))
    width = rng.uniform(2.0, 5.0)
    step = rng.uniform(6.0, 16.0) / p.rx
    pointed = rng.random() < 0.5
    for x in np.arange(-0.9, 0.9, step):
        picket = [(x, 0.9), (x, -0.7)] + ([(x, -0.8)] if not pointed else [])
        layer.line(p(np.array(picket)), width)
        if pointed:
            layer.polygon(p(np.array([(x - 0.6 * width / p.rx, -0.7), (x, -0.85),
                                      (x + 0.6 * width / p.rx, -0.7)])))
    _bars(layer, p, [[(-1, y), (1, y)] for y in rails], rng.uniform(2.0, 4.0))
    _bars(layer, p, [[(-1, -0.9), (-1, 1)], [(1, -0.9), (1, 1)]], rng.uniform(4.0, 7.0))


def thin_truss(rng, layer: Layer, p: Placement) -> None:
    """(Held out: never in DIS-TR, DIS-VD or DIS-TE1.) A triangulated lattice: a tower tapering to
    its top or a bridge / crane truss, chords 2-4 px wide, diagonal bracing 1.5-2.5 px wide in
    X or zigzag panels."""
    tower = rng.random() < 0.6
    p = _upright(p, rng, 0.15) if tower else p
    chord, brace = rng.uniform(2.0, 4.0), rng.uniform(1.5, 2.5)
    panels = int(rng.integers(4, 10))
    along = np.linspace(-1, 1, panels + 1)
    top = rng.uniform(0.1, 0.35) if tower else 0.3
    half = top + (1 - top) * (along + 1) / 2 if tower else np.full_like(along, top)
    left, right = np.stack([-half, along], 1), np.stack([half, along], 1)
    if not tower:  # lying down
        left, right = left[:, ::-1], right[:, ::-1]
    _bars(layer, p, [left, right], chord)
    crossed = rng.random() < 0.5
    for k in range(panels):
        _bars(layer, p, [[left[k], right[k]]], brace)
        if crossed or k % 2 == 0:
            _bars(layer, p, [[left[k], right[k + 1]]], brace)
        if crossed or k % 2 == 1:
            _bars(layer, p, [[right[k], left[k + 1]]], brace)
    _bars(layer, p, [[left[-1], right[-1]]], brace)


# the kinds DIS-TR, DIS-VD and DIS-TE1 draw in turn (kind = index mod 10), and the held-out kind
# of heldout/DIS5K/DIS-TE1, which no other split draws
THIN_KINDS = {"lines": thin_lines, "mesh": thin_mesh, "rings": thin_rings, "branch": thin_branch,
              "creature": thin_creature, "frame": thin_frame, "plant": thin_plant,
              "holes": thin_holes, "text": thin_text, "fence": thin_fence}
HELDOUT_THIN_KINDS = {"truss": thin_truss}


def thin_kind(stream: str, i: int) -> str:
    """The kind of image i of a thin split: THIN_KINDS in turn (index mod 10) in DIS-TR, DIS-VD and
    DIS-TE1, HELDOUT_THIN_KINDS in heldout/DIS-TE1."""
    kinds = list(HELDOUT_THIN_KINDS if stream.startswith("heldout/") else THIN_KINDS)
    return kinds[i % len(kinds)]


def thin_pair(seed: int, stream: str, i: int) -> tuple[np.ndarray, np.ndarray]:
    """Pair i of a thin split (stream DIS-TR, DIS-VD, DIS-TE1 or heldout/DIS-TE1) as its files hold
    it: image (H, W, 3) uint8 (after the JPEG round trip) and GT (H, W) uint8 0 / 255."""
    image, gt = thin_image(seed, stream, i)
    return as_jpeg(image), gt


def thin_image(seed: int, stream: str, i: int) -> tuple[np.ndarray, np.ndarray]:
    """A thin structure of kind thin_kind(stream, i) on a textured background: the image before
    its JPEG encoding, and the GT (coverage > 0.5)."""
    rng = rng_for(seed, stream, i)
    h, w = image_size(rng)
    image = background(rng, h, w, clutter=0.3)
    layer = Layer(h, w)
    kind = thin_kind(stream, i)
    {**THIN_KINDS, **HELDOUT_THIN_KINDS}[kind](rng, layer, Placement.random(rng, h, w, 0.55, 0.85))
    alpha = layer.coverage()
    image = paint(rng, image, alpha, rng.uniform(0, 30))
    return with_noise(rng, image), np.where(alpha > 0.5, 255, 0).astype(np.uint8)


# ----------------------------------------------------------------------------------------------
# 2c. Mattes: people, animals and objects; mostly opaque, a few transparent
# ----------------------------------------------------------------------------------------------


def _strands(rng, layer: Layer, body: np.ndarray, n: int, length: tuple, width: tuple,
             where: np.ndarray = None) -> None:
    """n strands growing outwards from the edge of `body` (bool; only where `where` is True, if
    given), each 3-6 bending segments."""
    edge = body & ~ndimage.binary_erosion(body)
    cy, cx = np.argwhere(edge).mean(axis=0)
    edge = np.argwhere(edge if where is None else edge & where)
    for y, x in edge[rng.choice(len(edge), min(n, len(edge)), replace=False)]:
        a = np.arctan2(y - cy, x - cx) + rng.normal(0, 0.4)
        pts = [(x, y)]
        for _ in range(int(rng.integers(3, 7))):
            a += rng.normal(0, 0.25)
            d = rng.uniform(*length)
            pts.append((pts[-1][0] + d * np.cos(a), pts[-1][1] + d * np.sin(a)))
        layer.line(np.array(pts), rng.uniform(*width))


def _body(rng, h: int, w: int, lo: float, hi: float) -> tuple[np.ndarray, Placement]:
    layer = Layer(h, w)
    p = Placement.random(rng, h, w, lo, hi)
    layer.polygon(p(_outline(rng, str(rng.choice(["blob", "ellipse"])))))
    return layer.coverage(), p


def _silhouette(h: int, w: int, p: Placement, parts: list) -> np.ndarray:
    """(h, w) coverage of a figure made of parts in the unit square: ("ellipse", cx, cy, rx, ry)
    or ("line", points, width as a fraction of the figure's size)."""
    layer = Layer(h, w)
    for part in parts:
        if part[0] == "ellipse":
            _, cx, cy, rx, ry = part
            layer.polygon(p(_circle() * [rx, ry] + [cx, cy]))
        else:
            layer.line(p(np.array(part[1], dtype=np.float64)), part[2] * p.scale)
    return layer.coverage()


def _furry(rng, h: int, w: int, body: np.ndarray, n: tuple, length: tuple, width: tuple,
           where: np.ndarray = None, blur: tuple = (0.5, 1.5)) -> np.ndarray:
    """An opaque body with a soft edge (Gaussian blur, sigma U(blur)) and strands at its edge."""
    strands = Layer(h, w)
    _strands(rng, strands, body > 0.5, int(rng.integers(*n)), length, width, where)
    return np.maximum(ndimage.gaussian_filter(body, rng.uniform(*blur)), strands.coverage())


def matte_person(rng, h: int, w: int) -> np.ndarray:
    """A person, head and shoulders: an opaque body with hair strands 0.25-1 px wide at the top and
    sides of the head (AIM's portraits)."""
    p = _upright(Placement.random(rng, h, w, 0.5, 0.8), rng, 0.15)
    p.rx = p.ry = math.sqrt(p.rx * p.ry)  # a person's proportions
    head_y, hair = rng.uniform(-0.55, -0.4), rng.uniform(1.0, 1.25)  # hair: volume over the head
    parts = [("ellipse", 0.0, head_y, 0.3, 0.38), ("ellipse", 0.0, 0.1, 0.15, 0.3),
             ("ellipse", 0.0, 0.8, rng.uniform(0.8, 1.0), 0.6),
             ("ellipse", 0.0, head_y - 0.06 * hair, 0.32 * hair, 0.36 * hair)]
    body = _silhouette(h, w, p, parts)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    jaw = p(np.array([[0.0, head_y + 0.15]]))[0]  # hair above the jaw line (in the figure)
    up = np.array([np.sin(p.theta), -np.cos(p.theta)])
    where = (xx - jaw[0]) * up[0] + (yy - jaw[1]) * up[1] > 0
    return _furry(rng, h, w, body, (200, 500), (2, 7), (0.25, 1.0), where)


def matte_plush(rng, h: int, w: int) -> np.ndarray:
    """A plush toy: body, head, round ears and paws, opaque, its whole edge fuzzy with short fibres
    0.25-0.6 px wide."""
    p = _upright(Placement.random(rng, h, w, 0.45, 0.75), rng, 0.3)
    parts = [("ellipse", 0.0, 0.35, 0.55, 0.6), ("ellipse", 0.0, -0.45, 0.45, 0.4),
             ("ellipse", -0.38, -0.8, 0.17, 0.17), ("ellipse", 0.38, -0.8, 0.17, 0.17),
             ("ellipse", -0.6, 0.15, 0.2, 0.14), ("ellipse", 0.6, 0.15, 0.2, 0.14),
             ("ellipse", -0.3, 0.9, 0.2, 0.13), ("ellipse", 0.3, 0.9, 0.2, 0.13)]
    return _furry(rng, h, w, _silhouette(h, w, p, parts), (300, 700), (0.8, 2), (0.25, 0.6),
                  blur=(0.8, 1.8))


def matte_object(rng, h: int, w: int) -> np.ndarray:
    """An opaque object (a box, a bottle, a star...) with a soft border: out of focus (Gaussian
    blur, sigma 0.7-3 px), a handle 2-4 px wide in a third of them."""
    layer = Layer(h, w)
    p = Placement.random(rng, h, w, 0.35, 0.65)
    draw_solid(rng, layer, p, str(rng.choice(["ellipse", "rect", "polygon", "blob", "star"])))
    if rng.random() < 0.33:
        draw_appendages(rng, layer, p)
    return ndimage.gaussian_filter(layer.coverage(), rng.uniform(0.7, 3.0))


def matte_foliage(rng, h: int, w: int) -> np.ndarray:
    """A plant with fine leaves: stems 1-2 px wide and leaves on stalks 0.4-1 px wide (partial
    coverage)."""
    layer = Layer(h, w)
    p = _upright(Placement.random(rng, h, w, 0.55, 0.8), rng, 0.2)
    _plant(rng, layer, p, rng.uniform(1.0, 2.0), rng.uniform(0.4, 1.0), (0.08, 0.2), 24)
    return ndimage.gaussian_filter(layer.coverage(), 0.4)


def matte_animal(rng, h: int, w: int) -> np.ndarray:
    """(Held out: never in training, validation or the Composition-1K-style test.) An animal, side
    on: body, head, ears, four legs and a tail, its whole edge furred with strands 0.25-0.8 px wide
    (AM-2K's animals)."""
    p = _upright(Placement.random(rng, h, w, 0.5, 0.8), rng, 0.1)
    face = rng.choice([-1, 1])  # facing left or right
    legs = [("line", [(x, 0.2), (x + rng.normal(0, 0.05), 0.85)], 0.12)
            for x in (-0.55, -0.35, 0.35, 0.55)]
    parts = [("ellipse", 0.0, 0.1, 0.65, 0.32), ("ellipse", face * 0.7, -0.3, 0.25, 0.22),
             ("line", [(face * 0.68, -0.45), (face * 0.62, -0.7)], 0.1),
             ("line", [(face * 0.8, -0.45), (face * 0.85, -0.68)], 0.1),
             ("line", [(-face * 0.6, 0.0), (-face * 0.9, -0.2), (-face * 0.95, -0.45)], 0.08),
             *legs]
    body = _silhouette(h, w, p, parts)
    return _furry(rng, h, w, body, (400, 900), (1.5, 4), (0.25, 0.8))


def matte_alpha(rng: np.random.Generator, h: int, w: int, kind: str) -> np.ndarray:
    """(h, w) float32 alpha in [0, 1] of one foreground of the given kind."""
    if kind in DRAWN_MATTES:
        return DRAWN_MATTES[kind](rng, h, w)
    if kind == "fur":  # a soft-edged blob with dense strands 0.25-0.75 px wide (partial coverage)
        body, _ = _body(rng, h, w, 0.35, 0.55)
        return _furry(rng, h, w, body, (300, 700), (1, 3), (0.25, 0.75))
    if kind == "glass":  # semi-transparent inside, an opaque rim, a brighter highlight band
        layer, rim = Layer(h, w), Layer(h, w)
        p = Placement.random(rng, h, w, 0.4, 0.75)
        outline = p(_outline(rng, str(rng.choice(["ellipse", "rect", "polygon"]))))
        layer.polygon(outline)
        rim.line(np.concatenate([outline, outline[:1]]), rng.uniform(1.5, 4.0))
        inside = layer.coverage()
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        across = (xx - p.cx) * np.cos(p.theta) + (yy - p.cy) * np.sin(p.theta)
        band = np.abs(across) < 0.15 * p.scale
        alpha = inside * (rng.uniform(0.15, 0.5) + 0.3 * band)
        return np.maximum(alpha, rim.coverage())
    if kind == "veil":  # smoke: smooth noise under a soft envelope, alpha 0 to about 0.9
        body, _ = _body(rng, h, w, 0.5, 0.8)
        envelope = ndimage.gaussian_filter(body, rng.uniform(4, 10))
        density = np.clip(0.55 + 0.6 * _smooth_noise(rng, h, w, int(rng.integers(6, 16))), 0, 1)
        return np.clip(envelope * density * rng.uniform(0.8, 1.0), 0, 1)
    if kind == "lace":  # an opaque body and a net of 0.5-1.25 px threads around it
        body, p = _body(rng, h, w, 0.25, 0.4)
        net, region = Layer(h, w), Layer(h, w)
        thin_mesh(rng, net, Placement(p.cx, p.cy, 1.8 * p.rx, 1.8 * p.ry, p.theta))
        region.polygon(Placement(p.cx, p.cy, 1.8 * p.rx, 1.8 * p.ry, p.theta)(_circle()))
        threads = net.coverage() * region.coverage() * rng.uniform(0.4, 0.8)
        return np.maximum(ndimage.gaussian_filter(body, 0.7), threads)
    raise ValueError(f"unknown matte {kind!r}")


DRAWN_MATTES = {"person": matte_person, "plush": matte_plush, "object": matte_object,
                "foliage": matte_foliage, "animal": matte_animal}
# the kinds of the training, validation and Composition-1K-style foregrounds in turn (kind = index
# mod 8): opaque bodies with soft, hairy or furry edges, two transparent (glass, veil; AIM has a
# few); and the held-out kind of heldout/AIM, which no other split draws
MATTE_KINDS = ("person", "fur", "glass", "plush", "object", "veil", "foliage", "lace")
HELDOUT_MATTE_KINDS = ("animal",)


def matte_kind(stream: str, i: int) -> str:
    """The kind of foreground i: MATTE_KINDS in turn (index mod 8), HELDOUT_MATTE_KINDS in the
    held-out stream."""
    kinds = HELDOUT_MATTE_KINDS if stream.startswith("heldout/") else MATTE_KINDS
    return kinds[i % len(kinds)]


def matte_fg(seed: int, stream: str, i: int) -> tuple[np.ndarray, np.ndarray]:
    """A foreground (H, W, 3) uint8 (its colour everywhere, as AIM's fg files) and its alpha (H, W)
    uint8 of kind matte_kind(stream, i)."""
    rng = rng_for(seed, stream, i)
    h, w = image_size(rng)
    alpha = matte_alpha(rng, h, w, matte_kind(stream, i))
    fg = texture(rng, h, w, rng.uniform(0, 255, 3), rng.uniform(0, 40))
    return with_noise(rng, fg), rounded_uint8(255 * alpha)


def background_image(seed: int, stream: str, i: int) -> np.ndarray:
    """A background (H, W, 3) uint8; one in four smaller than any foreground (so compositing must
    upscale it, as Adobe's script does)."""
    rng = rng_for(seed, stream, i)
    if i % 4 == 0:
        h, w = int(rng.integers(96, 160)), int(rng.integers(96, 160))
    else:
        h, w = image_size(rng)
    return with_noise(rng, background(rng, h, w, clutter=0.5))


# ----------------------------------------------------------------------------------------------
# Writing the benchmark
# ----------------------------------------------------------------------------------------------


def _save(array: np.ndarray, path: Path, quality: int = JPEG_QUALITY) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".jpg":
        Image.fromarray(array).save(path, format="JPEG", quality=quality)
    else:
        Image.fromarray(array).save(path, format="PNG")


def _write_dis(root: Path, split: str, count: int, image_fn) -> None:
    """DIS5K/{split}/{im, gt}: image_fn(i) -> (image before JPEG, GT), i < count."""
    for i in range(count):
        image, gt = image_fn(i)
        _save(image, root / split / "im" / f"{split}_{i:04d}.jpg")
        _save(gt, root / split / "gt" / f"{split}_{i:04d}.png")


def _write_composition(test: Path, seed: int, fg_stream: str, bg_stream: str) -> None:
    """A Composition-1K-style test set in test/{fg,alpha,merged,alpha_copy,trimaps}: each
    foreground of fg_stream over COMP_BACKGROUNDS backgrounds of bg_stream."""
    for j in range(COUNTS[fg_stream]):
        fg, alpha = matte_fg(seed, fg_stream, j)
        _save(fg, test / "fg" / f"test_{j:04d}.png")
        _save(alpha, test / "alpha" / f"test_{j:04d}.png")
        trimap = make_trimap(alpha)
        for k in range(COMP_BACKGROUNDS):
            bg = background_image(seed, bg_stream, j * COMP_BACKGROUNDS + k)
            name = f"test_{j:04d}_{k}.png"
            # Eq. (1): I = alpha F + (1 - alpha) B, by Adobe's rule (readers.composite)
            _save(composite(fg, alpha, bg), test / "merged" / name)
            _save(alpha, test / "alpha_copy" / name)
            _save(trimap, test / "trimaps" / name)


def _write_matting(root: Path, seed: int) -> None:
    combined = root / "AIM" / "Combined_Dataset"
    train = combined / "Training_set"
    names = []
    for i in range(COUNTS["matting/train-fg"]):
        fg, alpha = matte_fg(seed, "matting/train-fg", i)
        subset = "Other" if i % 4 == 3 else "Adobe-licensed images"
        _save(fg, train / subset / "fg" / f"fg_{i:04d}.png")
        _save(alpha, train / subset / "alpha" / f"fg_{i:04d}.png")
        names.append(f"fg_{i:04d}.png")
    bg_names = []
    for i in range(COUNTS["matting/backgrounds"]):
        bg = background_image(seed, "matting/backgrounds", i)
        _save(bg, root / "backgrounds" / f"bg_{i:04d}.jpg")
        bg_names.append(f"bg_{i:04d}.jpg")
    (train / "training_fg_names.txt").write_text("\n".join(names) + "\n")
    (train / "training_bg_names.txt").write_text("\n".join(bg_names) + "\n")

    _write_composition(combined / "Test_set" / COMP_SUBSET, seed, "matting/test-fg",
                       "matting/test-bg")

    val = root / "AM-2K" / "validation"
    for i in range(COUNTS["matting/val-fg"]):
        fg, alpha = matte_fg(seed, "matting/val-fg", i)
        image = composite(fg, alpha, background_image(seed, "matting/val-bg", i))
        _save(image, val / "original" / f"m_{i:04d}.jpg")
        _save(alpha, val / "mask" / f"m_{i:04d}.png")
        _save(make_trimap(alpha), val / "trimap" / f"m_{i:04d}.png")


def manifest(seed: int) -> dict:
    """What write_benchmark writes: the seed, and per split its stream, image count and folder."""
    folders = {
        "solid/DIS-VD": "solid/DIS5K/DIS-VD", "solid/DIS-TE1": "solid/DIS5K/DIS-TE1",
        "DIS-TR": "DIS5K/DIS-TR", "DIS-VD": "DIS5K/DIS-VD", "DIS-TE1": "DIS5K/DIS-TE1",
        "matting/train-fg": "AIM/Combined_Dataset/Training_set",
        "matting/backgrounds": "backgrounds",
        "matting/test-fg": "AIM/Combined_Dataset/Test_set/Adobe-licensed images/fg",
        "matting/test-bg": "AIM/Combined_Dataset/Test_set/Adobe-licensed images/merged",
        "matting/val-fg": "AM-2K/validation", "matting/val-bg": "AM-2K/validation/original",
        "heldout/DIS-TE1": "heldout/DIS5K/DIS-TE1",
        "heldout/test-fg": f"{HELDOUT_COMP}/fg", "heldout/test-bg": f"{HELDOUT_COMP}/merged",
    }
    counts = {**COUNTS, "matting/test-bg": COUNTS["matting/test-fg"] * COMP_BACKGROUNDS,
              "matting/val-bg": COUNTS["matting/val-fg"],
              "heldout/test-bg": COUNTS["heldout/test-fg"] * COMP_BACKGROUNDS}
    return {"seed": seed, "thin_structure_test_split": f"DIS5K/{THIN_TEST_SPLIT}",
            "splits": {name: {"stream": STREAMS[name], "count": counts[name],
                              "folder": folders[name]} for name in folders}}


def check_target(root) -> Path:
    """The benchmark's folder, absolute, checked before any work: new or empty, not the current
    folder (it is replaced by a folder written beside it), in a folder that can be written. The
    temporary folders of writes killed mid-way (.ROOT.tmp-PID, their process gone) are removed."""
    root = Path(root).absolute()
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise outputs.WriteError(f"{root}: exists and is not an empty folder")
    if root.exists() and root.samefile(Path.cwd()):
        raise outputs.WriteError(f"{root}: the current folder; give a new folder's name (the "
                                 f"benchmark is written beside it, then renamed into place)")
    outputs.check_writable_folder(root.parent, "the benchmark's folder")
    leftovers = re.compile(rf"\.{re.escape(root.name)}\.tmp-(\d+)")
    for path in outputs.remove_stale_temporaries(root.parent, leftovers):
        print(f"removed {path} (left by an interrupted write)")
    return root


def write_benchmark(root, seed: int = 0) -> None:
    """Write the whole benchmark under root (a new or empty folder), all or nothing: into a
    temporary folder beside it, renamed to root at the end. outputs.WriteError (one line) if it
    cannot be written, or another writer finished first."""
    root = check_target(root)
    try:
        with outputs.whole_folder(root) as tmp:
            for split in ("DIS-VD", "DIS-TE1"):
                _write_dis(tmp / "solid" / "DIS5K", split, COUNTS[f"solid/{split}"],
                           functools.partial(solid_image, seed, split))
            for split in ("DIS-TR", "DIS-VD", "DIS-TE1"):
                _write_dis(tmp / "DIS5K", split, COUNTS[split],
                           functools.partial(thin_image, seed, split))
            _write_matting(tmp, seed)
            # the held-out kinds, each a test split of its own in the official layouts
            _write_dis(tmp / "heldout" / "DIS5K", "DIS-TE1", COUNTS["heldout/DIS-TE1"],
                       functools.partial(thin_image, seed, "heldout/DIS-TE1"))
            _write_composition(tmp / HELDOUT_COMP, seed, "heldout/test-fg", "heldout/test-bg")
            (tmp / "manifest.json").write_text(json.dumps(manifest(seed), indent=2) + "\n")
    except OSError as e:
        raise outputs.WriteError(f"{root}: cannot write ({outputs.reason(e)}); nothing "
                                 f"written") from None


def write_examples(root, seed: int = 0, per_kind: int = 2) -> list[dict]:
    """The first `per_kind` test images of each kind, byte for byte as write_benchmark writes them,
    under root (app.py's examples): DIS-TE1_0000.jpg ... (thin structures) and test_0000_0.png ...
    (Composition-1K composites over each foreground's first test background). All or nothing, into
    a temporary folder renamed to root; a root already there (another process was first) is kept.
    Returns root/examples.json's list: {"file", "split", "kind"} per image."""
    root = Path(root)
    n = per_kind * len(THIN_KINDS)
    examples = [{"file": f"{THIN_TEST_SPLIT}_{i:04d}.jpg", "split": THIN_TEST_SPLIT,
                 "kind": thin_kind(THIN_TEST_SPLIT, i)} for i in range(n)]
    examples += [{"file": f"test_{j:04d}_0.png", "split": "Composition-1K",
                  "kind": matte_kind("matting/test-fg", j)}
                 for j in range(per_kind * len(MATTE_KINDS))]
    if (root / "examples.json").is_file():
        return json.loads((root / "examples.json").read_text())
    try:
        with outputs.whole_folder(root) as tmp:
            for i in range(n):
                _save(thin_image(seed, THIN_TEST_SPLIT, i)[0], tmp / examples[i]["file"])
            for j in range(per_kind * len(MATTE_KINDS)):
                fg, alpha = matte_fg(seed, "matting/test-fg", j)
                bg = background_image(seed, "matting/test-bg", j * COMP_BACKGROUNDS)
                _save(composite(fg, alpha, bg), tmp / examples[n + j]["file"])
            (tmp / "examples.json").write_text(json.dumps(examples, indent=1) + "\n")
    except OSError:  # root appeared meanwhile (another process was first): keep it
        if not (root / "examples.json").is_file():
            raise
    return examples


# ----------------------------------------------------------------------------------------------
# 3. Toy datasets in the official layouts (python -m miniature.synthetic make-toy DIR), for tests
# ----------------------------------------------------------------------------------------------

TOY_JPEG_QUALITY = 92  # the toy's .jpg images
TOY_SIZES = [(192, 256), (256, 192), (224, 224), (160, 288), (288, 208), (240, 320)]  # (h, w)
SEG_KINDS = ("thin", "grid", "ring", "blob")


def _toy_texture(rng: np.random.Generator, h: int, w: int, base: np.ndarray) -> np.ndarray:
    """(h, w, 3) float: a base colour with a gradient, a stripe pattern and pixel noise."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) / max(h, w)
    gx, gy = rng.uniform(-40, 40, (2, 1, 1, 3)).astype(np.float32)
    f, theta, phase = rng.uniform(8, 30), rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi)
    stripes = 15 * np.sin(f * (xx * np.cos(theta) + yy * np.sin(theta)) + phase)
    noise = 8 * rng.standard_normal((h, w, 3), dtype=np.float32)
    return (
        base.astype(np.float32)
        + gx * xx[..., None]
        + gy * yy[..., None]
        + stripes[..., None]
        + noise
    )


def _toy_colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(object, background) base colours at least 150 apart, so a tiny model can tell them apart."""
    bg = rng.uniform(30, 225, 3)
    while True:
        fg = rng.uniform(30, 225, 3)
        if np.linalg.norm(fg - bg) > 150:
            return fg, bg


def _toy_shape(rng: np.random.Generator, h: int, w: int, kind: str) -> np.ndarray:
    """(h, w) float alpha in [0, 1] of one object: thin structures, a mesh, a ring, a blob."""
    H, W = SS * h, SS * w
    canvas = Image.new("L", (W, H), 0)
    d = ImageDraw.Draw(canvas)
    x0, y0 = rng.uniform(0.08, 0.3) * W, rng.uniform(0.08, 0.3) * H
    x1, y1 = rng.uniform(0.7, 0.92) * W, rng.uniform(0.7, 0.92) * H
    if kind == "thin":  # branches from one root, 1-3 px wide
        root = (rng.uniform(x0, x1), rng.uniform(y0, y1))
        for _ in range(rng.integers(3, 7)):
            pts, (x, y), a = [root], root, rng.uniform(0, 2 * np.pi)
            for _ in range(rng.integers(4, 9)):
                a += rng.normal(0, 0.5)
                x, y = (
                    np.clip(x + 0.08 * W * np.cos(a), x0, x1),
                    np.clip(y + 0.08 * H * np.sin(a), y0, y1),
                )
                pts.append((x, y))
            d.line(pts, fill=255, width=int(rng.integers(SS, 3 * SS + 1)), joint="curve")
    elif kind == "grid":  # a mesh inside a frame
        step, lw = rng.uniform(0.06, 0.12) * min(W, H), int(rng.integers(SS, 2 * SS + 1))
        for x in np.arange(x0, x1, step):
            d.line([(x, y0), (x, y1)], fill=255, width=lw)
        for y in np.arange(y0, y1, step):
            d.line([(x0, y), (x1, y)], fill=255, width=lw)
        d.rectangle([x0, y0, x1, y1], outline=255, width=3 * SS)
    elif kind == "ring":  # a ring with a hole, and spokes
        d.ellipse([x0, y0, x1, y1], fill=255)
        t = rng.uniform(0.15, 0.3)
        d.ellipse(
            [x0 + t * (x1 - x0), y0 + t * (y1 - y0), x1 - t * (x1 - x0), y1 - t * (y1 - y0)], fill=0
        )
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        for a in rng.uniform(0, 2 * np.pi, rng.integers(2, 5)):
            d.line(
                [(cx, cy), (cx + (x1 - x0) / 2 * np.cos(a), cy + (y1 - y0) / 2 * np.sin(a))],
                fill=255,
                width=2 * SS,
            )
    else:  # blob: a union of ellipses
        for _ in range(rng.integers(3, 7)):
            cx, cy = rng.uniform(x0, x1), rng.uniform(y0, y1)
            rx, ry = rng.uniform(0.1, 0.25) * W, rng.uniform(0.1, 0.25) * H
            d.ellipse(
                [max(x0, cx - rx), max(y0, cy - ry), min(x1, cx + rx), min(y1, cy + ry)], fill=255
            )
    return np.asarray(canvas.resize((w, h), Image.BOX), dtype=np.float64) / 255.0


def _toy_matte_alpha(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """(h, w) uint8 alpha: a blurred blob or ring with hair-like strands growing out of its edge."""
    body = _toy_shape(rng, h, w, str(rng.choice(["blob", "ring"])))
    body = ndimage.gaussian_filter(body, rng.uniform(0.5, 1.5))  # soft edge
    edge = np.argwhere((body > 0.5) & ~ndimage.binary_erosion(body > 0.5))
    cy, cx = edge.mean(axis=0)
    canvas = Image.new("L", (SS * w, SS * h), 0)
    d = ImageDraw.Draw(canvas)
    for y, x in edge[rng.choice(len(edge), min(len(edge), 150), replace=False)]:
        a = np.arctan2(y - cy, x - cx) + rng.normal(0, 0.4)  # outwards, with a wave
        pts = [(SS * x, SS * y)]
        for _ in range(4):
            a += rng.normal(0, 0.3)
            length = SS * rng.uniform(2, 5)
            pts.append((pts[-1][0] + length * np.cos(a), pts[-1][1] + length * np.sin(a)))
        d.line(pts, fill=255, width=int(rng.integers(1, 3)))  # 1-2 px at 4x: alpha ~0.25-0.5
    hair = np.asarray(canvas.resize((w, h), Image.BOX), dtype=np.float64) / 255.0
    return np.round(255 * np.maximum(body, hair)).astype(np.uint8)


def _toy_pair(rng: np.random.Generator, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """A textured image (h, w, 3) uint8 and its 0/255 mask (h, w) uint8 of one object."""
    h, w = TOY_SIZES[rng.integers(len(TOY_SIZES))]
    alpha = _toy_shape(rng, h, w, kind)
    fg_c, bg_c = _toy_colours(rng)
    a = alpha[:, :, None]
    image = a * _toy_texture(rng, h, w, fg_c) + (1 - a) * _toy_texture(rng, h, w, bg_c)
    return np.clip(image, 0, 255).astype(np.uint8), np.where(alpha > 0.5, 255, 0).astype(np.uint8)


def _toy_matte(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A foreground texture (h, w, 3), its alpha (h, w) and the background colour it contrasts
    with."""
    h, w = TOY_SIZES[rng.integers(len(TOY_SIZES))]
    fg_c, bg_c = _toy_colours(rng)
    fg = np.clip(_toy_texture(rng, h, w, fg_c), 0, 255).astype(np.uint8)
    return fg, _toy_matte_alpha(rng, h, w), bg_c


def make_toy(root, seed: int = 0, n_train: int = 48, n_val: int = 16, n_test: int = 16,
             n_fg: int = 32, n_comp: int = 16, n_aim500: int = 16, n_bg: int = 16) -> None:
    """Write small synthetic datasets under root, in the official layouts (deterministic from seed):
    DIS5K (.jpg images, .png masks), AIM's Combined_Dataset (training fg / alpha split 3:1 between
    "Adobe-licensed images" and "Other"; Composition-1K pre-composited as {stem}_{i}.png, four
    backgrounds per foreground), AIM-500 and backgrounds/ (textured images, some smaller than the
    foregrounds so that compositing has to upscale them)."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    save = functools.partial(_save, quality=TOY_JPEG_QUALITY)
    splits = {"DIS-TR": n_train, "DIS-VD": n_val, **{f"DIS-TE{k}": n_test for k in range(1, 5)}}
    for split, n in splits.items():
        for i in range(n):
            image, mask = _toy_pair(rng, SEG_KINDS[i % len(SEG_KINDS)])
            save(image, root / "DIS5K" / split / "im" / f"{split}_{i:04d}.jpg")
            save(mask, root / "DIS5K" / split / "gt" / f"{split}_{i:04d}.png")

    backgrounds = []
    for i in range(n_bg):
        h, w = (96, 128) if i % 4 == 0 else TOY_SIZES[rng.integers(len(TOY_SIZES))]
        bg = np.clip(_toy_texture(rng, h, w, rng.uniform(30, 225, 3)), 0, 255).astype(np.uint8)
        backgrounds.append(bg)
        save(bg, root / "backgrounds" / f"bg_{i:04d}.jpg")

    combined = root / "AIM" / "Combined_Dataset"
    for i in range(n_fg):
        fg, alpha, _ = _toy_matte(rng)
        subset = "Other" if i % 4 == 3 else "Adobe-licensed images"
        save(fg, combined / "Training_set" / subset / "fg" / f"fg_{i:04d}.png")
        save(alpha, combined / "Training_set" / subset / "alpha" / f"fg_{i:04d}.png")

    test = combined / "Test_set" / "Adobe-licensed images"
    per_fg = 4
    for j in range(math.ceil(n_comp / per_fg)):
        fg, alpha, _ = _toy_matte(rng)
        save(fg, test / "fg" / f"test_{j:04d}.png")
        save(alpha, test / "alpha" / f"test_{j:04d}.png")
        trimap = make_trimap(alpha)
        for k in range(min(per_fg, n_comp - j * per_fg)):
            name = f"test_{j:04d}_{k}.png"
            save(
                composite(fg, alpha, backgrounds[(j * per_fg + k) % n_bg]), test / "merged" / name
            )
            save(alpha, test / "alpha_copy" / name)
            save(trimap, test / "trimaps" / name)

    for i in range(n_aim500):
        fg, alpha, bg_c = _toy_matte(rng)
        bg = np.clip(_toy_texture(rng, *alpha.shape, bg_c), 0, 255).astype(np.uint8)
        save(composite(fg, alpha, bg), root / "AIM-500" / "original" / f"o_{i:04d}.jpg")
        save(alpha, root / "AIM-500" / "mask" / f"o_{i:04d}.png")
        save(make_trimap(alpha), root / "AIM-500" / "trimap" / f"o_{i:04d}.png")


def toy_main(argv) -> int:
    """python -m miniature.synthetic make-toy DIR: the toy datasets (make_toy)."""
    parser = argparse.ArgumentParser(prog="synthetic.py make-toy",
                                     description="write small toy datasets in the official layouts")
    parser.add_argument("dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-train", type=int, default=48,
                        help="DIS-TR images (val and test: 16 each)")
    args = parser.parse_args(argv)
    return outputs.run_main(lambda: write_toy(args), {outputs.WriteError: 2})


def write_toy(args) -> int:
    if args.dir.exists() and not args.dir.is_dir():
        raise outputs.OptionError(f"{args.dir}: exists and is not a folder")
    make_toy(args.dir, seed=args.seed, n_train=args.n_train)
    print(f"wrote toy datasets to {args.dir}: DIS5K, AIM/Combined_Dataset, AIM-500, backgrounds")
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["make-toy"]:
        return toy_main(argv[1:])
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="python -m miniature.synthetic make-toy DIR: the toy datasets")
    parser.add_argument("dir", type=Path, help="a new or empty folder")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    return outputs.run_main(lambda: write(args), {outputs.WriteError: 2},
                            "interrupted; nothing written (run it again)")


def write(args) -> int:
    t0 = time.time()
    write_benchmark(args.dir, args.seed)
    print(f"wrote the benchmark (seed {args.seed}) to {args.dir} in {time.time() - t0:.0f} s: "
          f"DIS5K (thin structures; test split {THIN_TEST_SPLIT}), AIM/Combined_Dataset, "
          f"AM-2K/validation, backgrounds, solid/DIS5K, heldout/ (the held-out kinds), "
          f"manifest.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
