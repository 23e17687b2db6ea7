"""SAM's frame and maps in numpy and pillow: what a predictor does around the model, without torch.

An image becomes SAM's frame: its longest side resized to S (PIL bilinear, as SAM's predictor does),
normalised with SAM's mean and std, zero-padded at the bottom and right to S x S; prompts are given
in the frame's pixels. A map from the model comes back at the image's size: up-sampled to S x S,
the padding cropped, resized to the image (bilinear, as F.interpolate with align_corners=False).
sam.py uses the first half on tensors; the ONNX predictor (sama_onnx.py) uses all of it in numpy, so
that it runs with onnxruntime, numpy and pillow alone.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

PIXEL_MEAN = (123.675, 116.28, 103.53)  # SAM's normalisation, on the 0-255 scale
PIXEL_STD = (58.395, 57.12, 57.375)


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
