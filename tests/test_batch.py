"""Many prompts in one call (predictor.Predictor.predict with B boxes or B point sets): each
object's maps equal those of its own call, for SAMA and plain SAM, boxes and points, the shipped
stand-in and random weights; one object keeps its (H, W) maps; a batch too large for one pass is
split; a bad box is named."""

import numpy as np
import pytest
from conftest import SAM_PTH, SAMA_PT, random_image, random_sama

from benchmarks.benchmark import prompt_memory
from frame import BATCH_BYTES, PromptError, prompt_bytes
from load_sam_weights import load_sama
from predictor import Predictor, batch_size_for
from sam import SAM_VARIANTS, Sam
from sama import SAMA, TASKS

pytestmark = pytest.mark.usefixtures("one_thread")

H, W = 90, 120
BOXES = np.array([[10.0, 20, 100, 80], [0, 0, W, H], [30, 5, 60, 70]])
POINTS = np.array([[[60.0, 45], [10, 10]], [[30, 30], [90, 60]], [[100, 80], [5, 85]]])
LABELS = np.array([[1, 0], [1, 1], [1, 0]])
# |batched - single| allowed for the probabilities and alphas: float rounding (batched matrix
# products sum in another order). Measured at most 1.2e-6 (stand-in and random weights, one
# thread; the test prints it)
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def standin() -> SAMA:
    return load_sama(SAMA_PT, SAM_PTH)


def predictors(standin: SAMA) -> dict[str, Predictor]:
    randomised = random_sama(SAM_VARIANTS["tiny"], 3)
    return {"SAMA stand-in": Predictor(standin), "SAM stand-in": Predictor(standin.sam),
            "SAMA random": Predictor(randomised, TASKS), "SAM random": Predictor(randomised.sam)}


def objects(B: int) -> list[dict]:
    """B objects as boxes, as point sets, as both."""
    return [{"box": BOXES[:B]}, {"points": POINTS[:B], "labels": LABELS[:B]},
            {"points": POINTS[:B], "labels": LABELS[:B], "box": BOXES[:B]}]


def largest_difference(batch: dict, single: list[dict]) -> float:
    """Masks identical, the float maps' largest |batched - single|."""
    worst = 0.0
    for i, one in enumerate(single):
        assert batch.keys() == one.keys()
        for name in ("mask", "sam"):
            np.testing.assert_array_equal(batch[name][i], one[name], err_msg=f"{name} {i}")
        for name in ("seg", "alpha"):
            assert batch[name].dtype == one[name].dtype == np.float32
            worst = max(worst, float(np.abs(batch[name][i] - one[name]).max()))
    return worst


def test_each_objects_maps_equal_its_own_call(standin):
    image = random_image(H, W, 0)
    worst = {}
    for name, predictor in predictors(standin).items():
        predictor.set_image(image)
        for B in (1, 3):
            for prompt in objects(B):
                batch = predictor.predict(**prompt)
                assert all(m.shape == (B, H, W) for m in batch.values()), name
                single = [predictor.predict(**{k: v[i] for k, v in prompt.items()})
                          for i in range(B)]
                assert all(m.shape == (H, W) for one in single for m in one.values()), name
                worst[name] = max(worst.get(name, 0.0), largest_difference(batch, single))
        # the maps differ from object to object: the test can see a mix-up
        boxes = predictor.predict(box=BOXES)
        assert not np.array_equal(boxes["seg"][0], boxes["seg"][1]), name
    print("largest |batched - single| (seg, alpha):", {k: f"{v:.1e}" for k, v in worst.items()})
    assert max(worst.values()) <= TOLERANCE, worst


def test_one_object_keeps_its_shapes_and_maps(standin):
    """A (4,) box or (N, 2) points: (H, W) maps, those of the batch of one."""
    predictor = Predictor(standin)
    predictor.set_image(random_image(H, W, 1))
    for one, batch in (({"box": BOXES[0]}, {"box": BOXES[:1]}),
                       ({"points": POINTS[0], "labels": LABELS[0]},
                        {"points": POINTS[:1], "labels": LABELS[:1]})):
        single, batched = predictor.predict(**one), predictor.predict(**batch)
        assert all(m.shape == (H, W) for m in single.values())
        assert all(m.shape == (1, H, W) for m in batched.values())
        for name in single:
            np.testing.assert_array_equal(single[name], batched[name][0])
    empty = predictor.predict(box=np.zeros((0, 4)))
    assert [(m.shape, m.dtype) for m in empty.values()] == [
        ((0, H, W), np.float32), ((0, H, W), bool), ((0, H, W), np.float32), ((0, H, W), bool)]


def test_a_batch_split_into_passes_gives_the_same_maps(standin, monkeypatch):
    """batch_size 1 and 2 (7 boxes: passes of 2, 2, 2, 1) against one pass of all seven."""
    rng = np.random.default_rng(0)
    corners = np.sort(rng.uniform(0, [W, H, W, H], (7, 4)).reshape(7, 2, 2), axis=1)
    boxes = np.stack([corners[:, 0, 0], corners[:, 0, 1], corners[:, 1, 0] + 1,
                      corners[:, 1, 1] + 1], axis=1).clip(0, [W, H, W, H])
    for predictor in (Predictor(standin), Predictor(standin.sam)):
        predictor.set_image(random_image(H, W, 2))
        whole = predictor.predict(box=boxes, batch_size=7)
        passes = []
        real = predictor.predict_objects
        monkeypatch.setattr(predictor, "predict_objects",
                            lambda objs, real=real, passes=passes:
                            passes.append(len(objs)) or real(objs))
        for size, expected in ((1, [1] * 7), (2, [2, 2, 2, 1])):
            passes.clear()
            split = predictor.predict(box=boxes, batch_size=size)
            assert passes == expected
            assert largest_difference(split, [{k: m[i] for k, m in whole.items()}
                                              for i in range(7)]) <= TOLERANCE
        predictor.batch_size = 3  # the default, from the memory estimate
        passes.clear()
        predictor.predict(box=boxes)
        assert passes == [3, 3, 1]
        monkeypatch.undo()


def test_the_batch_size_rule():
    """budget // the estimated bytes of a prompt, at least 1: SAMA's passes and SAM's for SAMA,
    SAM's alone for SAM."""
    tiny = Sam(SAM_VARIANTS["tiny"])  # G = 16, C = 64, S = 256
    sama_bytes, sam_bytes = prompt_bytes(16, 64, 256, 2), prompt_bytes(16, 64, 256, 0)
    # by hand: SAMA_FLOATS = 40 G^2 C values and the two tasks' maps at S x S
    assert sama_bytes - sam_bytes == 4 * (40 * 16**2 * 64 + 2 * 256**2)
    assert sam_bytes == 4 * (4 * 16**2 * 64 + 256**2)  # SAM_FLOATS = 4, its map
    assert batch_size_for(SAMA(tiny)) == BATCH_BYTES // sama_bytes == 585
    assert batch_size_for(tiny) == BATCH_BYTES // sam_bytes
    assert batch_size_for(SAMA(tiny), budget=1) == 1


def test_a_bad_object_is_named(standin):
    predictor = Predictor(standin)
    predictor.set_image(random_image(H, W, 3))
    bad = BOXES.copy()
    bad[1] = [50, 20, 40, 80]
    cases = [
        ({"box": bad}, r"^object 1 of 3: box 50 20 40 80: needs x1 >= x0 and y1 >= y0$"),
        ({"box": np.array([[1.0, 2, 3, 4], [130, 5, 140, 9]])},
         "^object 1 of 2: box 130 5 140 9: outside the 120x90 image$"),
        ({"box": np.array([[1.0, 2, 3, np.nan]])},
         "^object 0 of 1: box 1 2 3 nan: coordinates must be finite numbers$"),
        ({"points": POINTS, "labels": np.array([[1, 0], [1, 2], [1, 1]])},
         r"^object 1 of 3: labels: 2: only 1 \(foreground\) and 0 \(background\)$"),
        ({"points": POINTS, "labels": LABELS[:2]},
         r"^labels: one per point, shape \(3, 2\), is needed for points of shape \(3, 2, 2\), "
         r"got shape \(2, 2\)$"),
        ({"points": POINTS, "labels": LABELS, "box": BOXES[:2]},
         "^2 boxes and 3 point sets: one point set per box$"),
        ({"points": POINTS[0], "labels": LABELS[0], "box": BOXES},
         r"^points: a \(B, N, 2\) array \(N points per object\) is needed, got shape "
         r"\(2, 2\)$"),
        ({"box": np.zeros((2, 3))},
         r"^boxes: a \(B, 4\) array \(x0 y0 x1 y1 per object\) is needed, got shape "
         r"\(2, 3\)$"),
    ]
    for prompt, line in cases:
        with pytest.raises(PromptError, match=line):
            predictor.predict(**prompt)
    with pytest.warns(UserWarning, match="^object 1 of 2: box -10 20 130 80: partly outside the "
                                         "120x90 image, clipped to 0 20 120 80$"):
        clipped = predictor.predict(box=np.array([[1.0, 2, 30, 40], [-10, 20, 130, 80]]))
    inside = predictor.predict(box=np.array([0.0, 20, 120, 80]))
    assert largest_difference({k: m[1:] for k, m in clipped.items()}, [inside]) <= TOLERANCE


def test_the_estimate_bounds_what_a_prompt_allocates(standin):
    """prompt_bytes against the memory a pass allocates per prompt (B = 4 less B = 1, over 3):
    not below it (the budget holds), not far above it."""
    cfg = standin.sam.config
    for model, tasks in ((standin, 2), (standin.sam, 0)):
        predictor = Predictor(model)
        predictor.set_image(random_image(H, W, 5))
        per_prompt = prompt_memory(predictor, BOXES[0])
        estimate = prompt_bytes(cfg.grid_size, cfg.prompt_embed_dim, cfg.image_size, tasks)
        print(f"tasks {tasks}: {per_prompt / 2**20:.2f} MiB a prompt, estimated "
              f"{estimate / 2**20:.2f} MiB")
        assert per_prompt <= estimate <= 1.75 * per_prompt, (tasks, per_prompt)
