"""The numbers the paper reports, for side-by-side tables (evaluate.py's results.md, ablate.py).

Copied from the paper's Tables 1-5; MSE in our units, x1e3. PAPER[split] is the list of the
paper's rows on that split, each {"label", "table", "scores", "config"}: config is the
configuration as a run of ours records it (evaluate.py's metrics.json), so that our row is matched
to the paper's row of the same configuration.
"""

from __future__ import annotations

import data
from scoring import BAND

DIS = ("maxF", "wF", "MAE", "Sm", "meanEm")
MATTE = ("SAD", "MSE")
FULL = {"model": "sama", "use_mvle": True, "use_local_adapter": True, "tasks": ["seg", "matting"]}

# the configurations the tables' rows name
NEITHER = "SAMA without MVLE and Local-Adapter"
NO_MVLE = "SAMA without MVLE"
NO_LA = "SAMA without Local-Adapter"
SEG_ONLY = "SAMA trained on segmentation only"
MATTING_ONLY = "SAMA trained on matting only"
CONFIGS = {
    "SAM": {"model": "sam"},
    "SAMA": FULL,
    NEITHER: {**FULL, "use_mvle": False, "use_local_adapter": False},
    NO_MVLE: {**FULL, "use_mvle": False},
    NO_LA: {**FULL, "use_local_adapter": False},
    SEG_ONLY: {**FULL, "tasks": ["seg"]},
    MATTING_ONLY: {**FULL, "tasks": ["matting"]},
    "SAMA trained on both tasks": FULL,
}


def _row(label: str, table: str, keys: tuple, values: tuple) -> dict:
    """One row of a table on one split: the configuration its label names (CONFIGS), its scores."""
    return {"label": label, "table": table, "scores": dict(zip(keys, values)),
            "config": dict(CONFIGS[label])}


# Table 1: SAM's row and SAMA's row on each DIS split
TABLE_1 = {
    "DIS-VD": ((0.835, 0.782, 0.069, 0.808, 0.889), (0.942, 0.885, 0.021, 0.930, 0.962)),
    "DIS-TE1": ((0.838, 0.807, 0.047, 0.843, 0.805), (0.940, 0.911, 0.012, 0.947, 0.977)),
    "DIS-TE2": ((0.803, 0.758, 0.081, 0.792, 0.863), (0.932, 0.904, 0.019, 0.934, 0.962)),
    "DIS-TE3": ((0.773, 0.724, 0.094, 0.761, 0.848), (0.920, 0.889, 0.032, 0.924, 0.949)),
    "DIS-TE4": ((0.677, 0.634, 0.162, 0.697, 0.762), (0.917, 0.857, 0.041, 0.897, 0.937)),
    "DIS-TE": ((0.773, 0.731, 0.096, 0.773, 0.845), (0.926, 0.897, 0.026, 0.925, 0.956)),
}
PAPER = {split: [_row("SAM", "Table 1", DIS, sam), _row("SAMA", "Table 1", DIS, sama)]
         for split, (sam, sama) in TABLE_1.items()}
PAPER["DIS-VD"] += [
    _row(NEITHER, "Table 3", DIS, (0.872, 0.849, 0.038, 0.868, 0.932)),
    _row(NO_MVLE, "Table 3", DIS, (0.893, 0.876, 0.029, 0.912, 0.944)),
    _row(NO_LA, "Table 3", DIS, (0.882, 0.869, 0.027, 0.903, 0.942)),
    _row(SEG_ONLY, "Table 5", DIS, (0.917, 0.876, 0.027, 0.916, 0.946)),
    _row(MATTING_ONLY, "Table 5", DIS, (0.682, 0.709, 0.071, 0.807, 0.855)),
]
PAPER.update({
    # Table 2 prints MSE x1e3 already (2.9)
    "Composition-1K": [_row("SAMA", "Table 2", MATTE, (22.8, 2.9))],
    "Distinctions-646": [_row("SAMA", "Table 2", MATTE, (22.4, 2.2))],
    # Table 5 prints MSE unscaled (0.0100 = 10.0 x1e3)
    "RefMatte-RW100": [
        _row(SEG_ONLY, "Table 5", MATTE, (62.70, 54.0)),
        _row(MATTING_ONLY, "Table 5", MATTE, (34.25, 21.0)),
        _row("SAMA trained on both tasks", "Table 5", MATTE, (25.69, 10.0)),
    ],
    # Table 4 prints MSE unscaled (0.003 = 3.0 x1e3) and names the set "P3M-500" (taken as
    # P3M-500-NP)
    "AM-2K": [
        _row(NEITHER, "Table 4", MATTE, (19.79, 28.0)),
        _row(NO_MVLE, "Table 4", MATTE, (12.74, 7.0)),
        _row(NO_LA, "Table 4", MATTE, (13.12, 11.0)),
        _row("SAMA", "Table 4", MATTE, (8.04, 3.0)),
    ],
    "P3M-500-NP": [
        _row(NEITHER, "Table 4", MATTE, (16.06, 34.6)),
        _row(NO_MVLE, "Table 4", MATTE, (12.15, 5.7)),
        _row(NO_LA, "Table 4", MATTE, (13.09, 6.3)),
        _row("SAMA", "Table 4", MATTE, (9.08, 2.8)),
    ],
})
SINGLE_TASK_NOTE = ("A model trained for one task is scored through the head it trained (the paper "
                    "does not say how it scored Table 5's other-task cells): trained for matting "
                    "only, its alpha is the segmentation probability map; trained for segmentation "
                    "only, its probability sigmoid(seg logits) is the alpha.")
PAPER_NOTES = {
    "DIS-VD": SINGLE_TASK_NOTE,
    "Distinctions-646": (
        f"Scored on the whole image, as the comparison rows of Table 2 (ViTMatte's evaluation) "
        f"score Distinctions-646; the columns marked {BAND} score the unknown band of "
        f"data.make_trimap(alpha, {data.D646_TRIMAP_RADIUS}) (alpha > 0 dilated by "
        f"{data.D646_TRIMAP_RADIUS} px, minus alpha == 255 eroded by {data.D646_TRIMAP_RADIUS} "
        f"px; the set ships no trimaps). Composites: foreground k (in name order) over the images "
        f"named 20 k .. 20 k + 19 of the archive's Test/{data.D646_TEST_LIST}, Adobe's rule."
    ),
    "RefMatte-RW100": (
        "SAMA takes boxes and points, not text: each image is prompted with the box of its alpha "
        "(alpha > 127, as MAM), not with its referring expressions, and scored on the whole "
        "image. Table 5 prints MSE unscaled (e.g. 0.0100); shown here x1e3 like ours. "
        + SINGLE_TASK_NOTE
    ),
    "COIFT": "The paper gives COIFT's point study only as a plot (Figure 2), no numbers in its "
             "text.",
    "ThinObject-5K": "The paper reports no ThinObject-5K numbers.",
    "AIM-500": "The paper reports no AIM-500 numbers.",
    "AM-2K": "Table 4 prints MSE unscaled (e.g. 0.003); shown here x1e3 like ours.",
    "P3M-500-NP": 'Table 4 prints MSE unscaled (e.g. 0.0028) for "P3M-500"; shown here x1e3 like '
                  'ours.',
}
