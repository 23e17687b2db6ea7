"""SAM's frame and maps in numpy and pillow: what a predictor does around the model, without torch.

An image becomes SAM's frame: its longest side resized to S (PIL bilinear, as SAM's predictor does),
normalised with SAM's mean and std, zero-padded at the bottom and right to S x S; prompts are given
in the frame's pixels. A map from the model comes back at the image's size: up-sampled to S x S,
the padding cropped, resized to the image (bilinear, as F.interpolate with align_corners=False).
sam.py uses the first half on tensors; the ONNX predictor (sama_onnx.py) uses all of it in numpy, so
that it runs with onnxruntime, numpy and pillow alone.

The predictor contract's checks live here too, once, for every predictor (predictor.Predictor,
sama_onnx.OnnxPredictor) and the command lines that check a prompt before any work: the image, the
prompt against the image (a box partly outside clipped to it and said, one wholly outside or a point
outside refused), and the maps that come back (NaN or inf refused). And what the maps
become, for predict.py's files and the web page's downloads: the mask, the alpha and the RGBA
cutout (output_images; its colours are foreground.py's estimate, in torch), as PNG bytes.
"""

from __future__ import annotations

import io
import warnings
from typing import Optional

import numpy as np
from PIL import Image

PIXEL_MEAN = (123.675, 116.28, 103.53)  # SAM's normalisation, on the 0-255 scale
PIXEL_STD = (58.395, 57.12, 57.375)


# ----------------------------------------------------------------------------------------------
# The predictor contract's inputs, checked: the image, the prompt against the image
# ----------------------------------------------------------------------------------------------


class PromptError(ValueError):
    """A prompt that does not fit the image; one line."""


def check_image(image: np.ndarray) -> None:
    """image: (H, W, 3) uint8 RGB; anything else -> ValueError, one line."""
    if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3
            and image.dtype == np.uint8 and min(image.shape[:2]) > 0):
        shape = getattr(image, "shape", None)
        raise ValueError(f"image: an (H, W, 3) uint8 RGB array is needed, got "
                         f"{type(image).__name__} {getattr(image, 'dtype', '')} {shape}")


def number(v: float) -> str:
    """A coordinate as given, in short: 228.0001 stays 228.0001 (not 228), 228.0 is 228, 1e308 is
    1e+308 (not 309 digits)."""
    text = repr(float(v))
    return text[:-2] if text.endswith(".0") else text


def check_finite_coordinates(box, points: np.ndarray) -> None:
    """Every coordinate a finite number: NaN fails every comparison, so an unchecked NaN box would
    give an empty mask silently."""
    if box is not None and not np.isfinite(box).all():
        raise PromptError(f"box {' '.join(number(v) for v in box)}: coordinates must be finite "
                          f"numbers")
    for x, y in points:
        if not np.isfinite([x, y]).all():
            raise PromptError(f"point ({number(x)}, {number(y)}): coordinates must be finite "
                              f"numbers")


def check_point_labels(labels, n_points: int) -> np.ndarray:
    """One label per point -> the labels as an (N,) array."""
    if labels is None:
        raise PromptError("labels: one per point is needed (1 foreground, 0 background)")
    lab = np.asarray(labels).reshape(-1)
    if len(lab) != n_points:
        raise PromptError(f"labels: {len(lab)} for {n_points} points")
    return lab


def check_prompt(box, points: np.ndarray, h: int, w: int,
                 empty_box: bool = False) -> tuple[Optional[np.ndarray], str]:
    """Every coordinate finite, every point inside the image (0 <= x <= W, 0 <= y <= H), box
    corners ordered (x1 > x0, y1 > y0; x1 = x0 too with empty_box: a GT box of one pixel column).
    A box partly outside the image is clipped to it, as SAM's predictor takes such a box (what lies
    beyond the image is padding); a box with no part in the image is refused. -> (the box to use,
    a one-line notice of the clipping or '')."""
    if box is None and len(points) == 0:
        raise PromptError("give a box and / or at least one point")
    check_finite_coordinates(box, points)
    notice = ""
    if box is not None:
        shown = " ".join(number(v) for v in box)
        x0, y0, x1, y1 = box
        if (x1 < x0 or y1 < y0) if empty_box else (x1 <= x0 or y1 <= y0):
            needs = "x1 >= x0 and y1 >= y0" if empty_box else "x1 > x0 and y1 > y0"
            raise PromptError(f"box {shown}: needs {needs}")
        inside = np.clip(np.asarray(box, dtype=np.float64), 0, [w, h, w, h])
        if x0 > w or y0 > h or x1 < 0 or y1 < 0 or (
                not empty_box and (inside[2] <= inside[0] or inside[3] <= inside[1])):
            raise PromptError(f"box {shown}: outside the {w}x{h} image")
        if (inside != np.asarray(box, dtype=np.float64)).any():
            notice = (f"box {shown}: partly outside the {w}x{h} image, clipped to "
                      f"{' '.join(number(v) for v in inside)}")
            box = inside
    for x, y in points:
        if not (0 <= x <= w and 0 <= y <= h):
            raise PromptError(f"point ({number(x)}, {number(y)}) outside the {w}x{h} image")
    return box, notice


def check_prompt_arrays(points, labels, box, h: Optional[int], w: Optional[int],
                        stacklevel: int = 3):
    """A predictor's arguments (h None: no image set yet): shapes, labels 0 / 1 only, then
    check_prompt (a box of the GT may be one pixel wide: x1 = x0). -> the box to use: one partly
    outside the image clipped to it, with check_prompt's notice as a warning."""
    if h is None:
        raise PromptError("call set_image before predict")
    pts = np.zeros((0, 2)) if points is None else np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise PromptError(f"points: an (N, 2) array of x y is needed, got shape {pts.shape}")
    if points is not None:
        bad = [v for v in check_point_labels(labels, len(pts)).tolist() if v not in (0, 1)]
        if bad:
            raise PromptError(f"labels: {bad[0]!r}: only 1 (foreground) and 0 (background)")
    if box is not None:
        box = np.asarray(box, dtype=np.float64).reshape(-1)
        if box.shape != (4,):
            raise PromptError(f"box: 4 numbers x0 y0 x1 y1 are needed, got {box.size}")
    box, notice = check_prompt(box, pts, h, w, empty_box=True)
    if notice:
        warnings.warn(notice, stacklevel=stacklevel)  # at the caller of predict
    return box


def check_prompt_batch(points, labels, box, h: Optional[int], w: Optional[int]
                       ) -> tuple[list[tuple], bool]:
    """A predictor's arguments, one object or many: a box (4,) and / or points (N, 2) with labels
    (N,) are one object; boxes (B, 4) and / or points (B, N, 2) with labels (B, N) are B objects
    (B may be 1 or 0), the i-th box with the i-th point set. Each object checked as
    check_prompt_arrays checks one, a refusal or a clipping notice naming it ("object 2 of 5:
    box ...: ..."). -> ([(points, labels, box) of each object, the box clipped], batched)."""
    if h is None:
        raise PromptError("call set_image before predict")
    boxes = None if box is None else np.asarray(box, dtype=np.float64)
    pts = None if points is None else np.asarray(points, dtype=np.float64)
    batched = (boxes is not None and boxes.ndim == 2) or (pts is not None and pts.ndim == 3)
    if not batched:
        return [(points, labels, check_prompt_arrays(points, labels, box, h, w, 4))], False
    if boxes is not None and (boxes.ndim != 2 or boxes.shape[1] != 4):
        raise PromptError(f"boxes: a (B, 4) array (x0 y0 x1 y1 per object) is needed, got "
                          f"shape {boxes.shape}")
    if pts is not None and (pts.ndim != 3 or pts.shape[2] != 2):
        raise PromptError(f"points: a (B, N, 2) array (N points per object) is needed, got "
                          f"shape {pts.shape}")
    if pts is not None:
        lab = None if labels is None else np.asarray(labels)
        if lab is None or lab.shape != pts.shape[:2]:
            found = "none" if lab is None else f"shape {lab.shape}"
            raise PromptError(f"labels: one per point, shape {pts.shape[:2]}, is needed for "
                              f"points of shape {pts.shape}, got {found}")
    if boxes is not None and pts is not None and len(boxes) != len(pts):
        raise PromptError(f"{len(boxes)} boxes and {len(pts)} point sets: one point set per box")
    objects = []
    B = len(boxes) if boxes is not None else len(pts)
    for i in range(B):
        one = (None if pts is None else pts[i], None if pts is None else lab[i],
               None if boxes is None else boxes[i])
        with warnings.catch_warnings(record=True) as notices:
            warnings.simplefilter("always")
            try:
                clipped = check_prompt_arrays(*one, h, w)
            except PromptError as e:
                raise PromptError(f"object {i} of {B}: {e}") from None
        for notice in notices:
            warnings.warn(f"object {i} of {B}: {notice.message}", stacklevel=3)
        objects.append((one[0], one[1], clipped))
    return objects, True


# ----------------------------------------------------------------------------------------------
# Many prompts in one call: how many in one pass of the decoders
# ----------------------------------------------------------------------------------------------

# What one pass of the decoders over a batch of prompts may hold of its own, beside the image's
# features and the maps returned (DESIGN.md, "Many prompts in one call"): 10 prompts at ViT-B,
# 1024 px, 585 at the stand-in's size
BATCH_BYTES = 2 * 2**30
# float32 values a prompt adds to a pass, per G^2 C (G the token grid, C the decoder's width):
# SAMA's (its copy of the image's windows, 3.5 (2G)^2 C + G^2 C = 15 G^2 C, and one task's pass
# at a time: the adapters' attention, the heads' maps at 4G and 8G) and SAM's own pass. Measured
# by `python -m benchmarks.benchmark --many` (the profiler's peak of a pass, 4 prompts less 1,
# over 3): SAMA 46.2 G^2 C a prompt at ViT-B, 512 px (estimate 47), 45.3 at the stand-in's size
# (estimate 56); SAM alone 4.1 at ViT-B (estimate 5), 8.0 at the stand-in's (estimate 8)
SAMA_FLOATS, SAM_FLOATS = 40, 4


def prompt_bytes(grid_size: int, embed_dim: int, image_size: int, tasks: int) -> int:
    """The bytes one prompt adds to a pass: SAMA's passes (tasks > 0) and SAM's, each a multiple
    of G^2 C float32 values, and its maps (SAM's and one a task) up-sampled to the S x S frame."""
    G2C = grid_size**2 * embed_dim
    floats = (SAMA_FLOATS if tasks else 0) + SAM_FLOATS
    return 4 * (floats * G2C + (tasks + 1) * image_size**2)


def batch_size_for(grid_size: int, embed_dim: int, image_size: int, tasks: int,
                   budget: int = BATCH_BYTES) -> int:
    """The most prompts one pass takes: budget // prompt_bytes, at least 1."""
    return max(1, budget // prompt_bytes(grid_size, embed_dim, image_size, tasks))


def predict_in_passes(objects: list, batched: bool, step: int, predict_objects,
                      size: tuple[int, int]) -> dict[str, np.ndarray]:
    """The predictor contract's maps of checked objects (check_prompt_batch), predict_objects run
    on at most `step` of them at a time: (B, H, W) maps, or one object's (H, W) when not
    `batched`; no object: empty (0, H, W) maps. Predictor and OnnxPredictor share it."""
    passes = [predict_objects(objects[i : i + step]) for i in range(0, len(objects), step)]
    if not passes:
        H, W = size
        empty = {"seg": np.float32, "mask": bool, "alpha": np.float32, "sam": bool}
        return {name: np.zeros((0, H, W), dtype) for name, dtype in empty.items()}
    maps = {name: np.concatenate([p[name] for p in passes]) for name in passes[0]}
    return maps if batched else {name: m[0] for name, m in maps.items()}


# ----------------------------------------------------------------------------------------------
# The image and the prompts into the frame
# ----------------------------------------------------------------------------------------------


def preprocess_shape(h: int, w: int, long_side: int) -> tuple[int, int]:
    """Size (h', w') with the longest side equal to long_side, rounded as SAM rounds."""
    scale = long_side * 1.0 / max(h, w)
    return int(h * scale + 0.5), int(w * scale + 0.5)


def resize_longest_side(image: np.ndarray, long_side: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (h', w', 3) uint8, PIL bilinear as the official predictor does."""
    h, w = preprocess_shape(image.shape[0], image.shape[1], long_side)
    return np.array(Image.fromarray(image).resize((w, h), Image.BILINEAR))


def frame_array(image: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (3, size, size) float32: sam.image_to_frame in numpy."""
    x = resize_longest_side(image, size).transpose(2, 0, 1).astype(np.float32)  # (3, h', w')
    mean = np.array(PIXEL_MEAN, dtype=np.float32)[:, None, None]
    std = np.array(PIXEL_STD, dtype=np.float32)[:, None, None]
    frame = np.zeros((3, size, size), dtype=np.float32)  # padding comes after normalisation
    frame[:, : x.shape[1], : x.shape[2]] = (x - mean) / std
    return frame


def scale_coords(coords: np.ndarray, original_size: tuple[int, int], long_side: int) -> np.ndarray:
    """(..., 2) xy in the original image -> xy in the resized frame (SAM's apply_coords)."""
    h, w = original_size
    new_h, new_w = preprocess_shape(h, w, long_side)
    coords = np.array(coords, dtype=np.float64, copy=True)
    coords[..., 0] = coords[..., 0] * (new_w / w)
    coords[..., 1] = coords[..., 1] * (new_h / h)
    return coords


# ----------------------------------------------------------------------------------------------
# The model's maps back to the image
# ----------------------------------------------------------------------------------------------


def resize_bilinear(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(..., h, w) float32 -> (..., H, W): F.interpolate(mode="bilinear", align_corners=False)
    without antialiasing, along the width first, then the height, as PyTorch's CPU kernel."""

    def taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # source position of each output pixel's centre, clamped at 0, rounded as PyTorch's
        # kernel rounds it (a float32 scale, the position in float64, kept as float32); other
        # roundings move the weights by up to 1e-4 on a 4000 px side
        scale = np.float64(np.float32(n_in) / np.float32(n_out))
        src = np.maximum(scale * (np.arange(n_out) + 0.5) - 0.5, 0).astype(np.float32)
        i0 = src.astype(np.int64)  # floor, src >= 0
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, src - i0.astype(np.float32)

    x = maps.astype(np.float32, copy=False)
    i0, i1, lam = taps(x.shape[-1], size[1])
    x = x[..., i0] * (1 - lam) + x[..., i1] * lam  # (..., h, W)
    i0, i1, lam = taps(x.shape[-2], size[0])
    return x[..., i0, :] * (1 - lam)[:, None] + x[..., i1, :] * lam[:, None]  # (..., H, W)


def postprocess_maps(
    maps: np.ndarray, image_size: int, input_size: tuple[int, int], original_size: tuple[int, int]
) -> np.ndarray:
    """(..., h, w) -> (..., H, W): sam.postprocess_masks in numpy (up to the frame, crop the
    padding, resize to the original size)."""
    x = resize_bilinear(maps, (image_size, image_size))
    x = x[..., : input_size[0], : input_size[1]]
    return resize_bilinear(x, original_size)


class NonFiniteOutput(ValueError):
    """The model's output holds NaN or inf (broken weights or an overflow); one line."""


def check_finite(maps: dict[str, np.ndarray]) -> None:
    """A NaN map thresholds to an empty mask and rounds to a black alpha: refuse it instead."""
    bad = [name for name, m in maps.items() if not np.isfinite(m).all()]
    if bad:
        raise NonFiniteOutput(f"NaN or inf in the model's {' and '.join(bad)}")


# ----------------------------------------------------------------------------------------------
# The outputs: mask, alpha and cutout (predict.py's files, the web page's downloads)
# ----------------------------------------------------------------------------------------------


def output_images(image: np.ndarray, maps: dict[str, np.ndarray],
                  device: Optional[str] = None) -> dict[str, np.ndarray]:
    """The image (H, W, 3) uint8 and a predictor's maps (the contract) -> predict.py's three
    images, uint8: "mask" (H, W) 0 / 255 (the predictor's mask), "alpha" (H, W) 0-255 and
    "cutout" (H, W, 4) RGBA: its colour the foreground estimated from the image and the alpha
    (foreground.cutout, on `device`, default the GPU if there is one), not the image, whose partly
    transparent pixels hold the old background's colour; its transparency the alpha."""
    from foreground import cutout  # torch: imported here, so that the maps' side stays torch-free

    rgba = cutout(image, maps["alpha"], device)  # (H, W, 4)
    return {"mask": maps["mask"].astype(np.uint8) * 255, "alpha": rgba[:, :, 3].copy(),
            "cutout": rgba}


def png_bytes(array: np.ndarray) -> bytes:
    """(H, W) grey or (H, W, 4) RGBA uint8 -> the bytes of the PNG save_pngs writes for it."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()
