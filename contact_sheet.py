"""The contact sheet: one row per image of image with the prompt | GT | SAM | SAMA mask | SAMA
alpha | error map, every cell the same size under one header (evaluate.py --vis, the demo)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

import data
import outputs
import readers
from predictor import Predictor
from scoring import probability_to_grey, sample_points

VIS_CELL = 192  # pixels per side of every cell of the contact sheet
VIS_COLUMNS = ("image + prompt", "GT", "SAM mask", "SAMA mask", "SAMA alpha",
               "error: red too much, blue missing")
VIS_HEADER = 18  # pixels of the column titles


def fit_cell(panel: Image.Image) -> Image.Image:
    """The panel scaled to fit a VIS_CELL square, aspect kept, centred on light grey."""
    scale = VIS_CELL / max(panel.size)
    size = (max(1, round(panel.width * scale)), max(1, round(panel.height * scale)))
    cell = Image.new("RGB", (VIS_CELL, VIS_CELL), (230, 230, 230))
    cell.paste(panel.convert("RGB").resize(size, Image.BILINEAR),
               ((VIS_CELL - size[0]) // 2, (VIS_CELL - size[1]) // 2))
    return cell


def error_map(prediction: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """prediction - GT (both 0-255): red where the prediction is above the GT, blue below."""
    diff = prediction.astype(np.int16) - gt.astype(np.int16)
    rgb = np.zeros((*gt.shape, 3), np.uint8)
    rgb[..., 0] = np.clip(diff, 0, 255)
    rgb[..., 2] = np.clip(-diff, 0, 255)
    return rgb


def contact_rows(predictor: Predictor, kind: str, pairs, box_above: int = 0) -> list:
    """One row of VIS_COLUMNS cells per image, prompted as scoring.py prompts a split of this kind.
    The SAMA columns stay grey for plain SAM; the error map is the scored output's: SAMA's mask
    (alpha on matting splits), or SAM's mask for plain SAM. Point splits show the 10-point prompt,
    green dots."""
    rows = []
    for files in pairs:
        image, gt = readers.load_image(files[0]), readers.load_mask(files[1])
        predictor.set_image(image)
        stem = Path(files[1]).stem
        box = (data.mask_to_box(gt > (box_above if kind == "matting" else 128))
               if kind != "points" else None)
        points = sample_points(gt, stem) if kind == "points" else None
        labels = None if points is None else np.ones(len(points), dtype=np.int64)
        out = predictor.predict(points, labels, box)
        shown = Image.fromarray(image)
        draw = ImageDraw.Draw(shown)
        width = max(2, round(max(image.shape) / 100))
        if box is not None:
            draw.rectangle([float(v) for v in box], outline=(255, 0, 0), width=width)
        for x, y in points if points is not None else []:
            r = 2 * width
            draw.ellipse([x - r, y - r, x + r, y + r], fill=(0, 255, 0), outline=(0, 0, 0))
        grey = np.full(gt.shape, 128, np.uint8)
        sama = predictor.is_sama
        sam_mask = probability_to_grey(out["sam"])
        sama_mask = probability_to_grey(out["mask"]) if sama else grey
        alpha = probability_to_grey(out["alpha"]) if sama else grey
        scored = (alpha if kind == "matting" else sama_mask) if sama else sam_mask
        panels = [shown, gt, sam_mask, sama_mask, alpha, error_map(scored, gt)]
        rows.append([fit_cell(Image.fromarray(p) if isinstance(p, np.ndarray) else p)
                     for p in panels])
    return rows


def contact_sheet(rows: list, path: Path) -> None:
    """The rows under one header of column titles, every cell the same size; written atomically."""
    gap = 4
    step = VIS_CELL + gap
    sheet = Image.new("RGB", (len(VIS_COLUMNS) * step - gap, VIS_HEADER + len(rows) * step),
                      (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for k, name in enumerate(VIS_COLUMNS):
        draw.text((k * step + 2, 3), name, fill=(0, 0, 0))
    for i, row in enumerate(rows):
        for k, cell in enumerate(row):
            sheet.paste(cell, (k * step, VIS_HEADER + i * step))
    png = io.BytesIO()
    sheet.save(png, format="PNG")
    outputs.write_bytes(png.getvalue(), path)
