"""Shared test helpers: the official segment-anything package as an oracle, random weights, the
toy datasets, a
report.

The official package (pip `segment-anything`, a test dependency only) imports torchvision in its
`__init__`, which is not installed here. `import_official()` imports its `modeling` and `predictor`
modules without running that `__init__`, and gives `utils/transforms.py` a stand-in for the two
torchvision functions it uses (PIL bilinear resize, as torchvision does on PIL images).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import math
import sys
import types
from collections import defaultdict
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from miniature import synthetic
from readers import image_files
from sam import PIXEL_MEAN, PIXEL_STD, Sam, SamConfig, prompt_tensors  # the root is on sys.path
from sama import SAMA

ROOT = Path(__file__).resolve().parent.parent
SAMA_PT, SAM_PTH = ROOT / "weights" / "sama_standin.pt", ROOT / "weights" / "sam_standin.pth"


# ----------------------------------------------------------------------------------------------
# The official package, imported without its __init__ (and without torchvision)
# ----------------------------------------------------------------------------------------------


def _torchvision_stand_in() -> dict[str, types.ModuleType]:
    """torchvision / .transforms / .transforms.functional with resize and to_pil_image on PIL
    images."""
    functional = types.ModuleType("torchvision.transforms.functional")
    functional.to_pil_image = lambda image: Image.fromarray(image)
    functional.resize = lambda image, size: image.resize((size[1], size[0]), Image.BILINEAR)
    transforms = types.ModuleType("torchvision.transforms")
    transforms.functional = functional
    torchvision = types.ModuleType("torchvision")
    torchvision.transforms = transforms
    return {"torchvision": torchvision, "torchvision.transforms": transforms,
            "torchvision.transforms.functional": functional}


def import_official() -> types.SimpleNamespace:
    """The official `segment_anything.modeling` and `segment_anything.predictor` modules."""
    if "segment_anything.predictor" not in sys.modules:
        spec = importlib.util.find_spec("segment_anything")  # locates the package, runs nothing
        if spec is None or not spec.submodule_search_locations:
            pytest.skip(
                "the test oracle `segment-anything` is not installed (pip install -r "
                "requirements-dev.txt)"
            )
        package = types.ModuleType("segment_anything")
        package.__path__ = list(spec.submodule_search_locations)
        package.__file__ = spec.origin
        sys.modules["segment_anything"] = package  # a bare package: its __init__ never runs
        stand_in = {} if importlib.util.find_spec("torchvision") else _torchvision_stand_in()
        sys.modules.update(stand_in)
        try:
            importlib.import_module("segment_anything.modeling")
            importlib.import_module("segment_anything.predictor")  # binds resize / to_pil_image now
        finally:
            for name in stand_in:  # the stand-in lives only as long as the import
                sys.modules.pop(name, None)
    modeling = sys.modules["segment_anything.modeling"]
    predictor = sys.modules["segment_anything.predictor"]
    return types.SimpleNamespace(modeling=modeling, SamPredictor=predictor.SamPredictor)


def build_official_sam(cfg: SamConfig) -> nn.Module:
    """The official Sam with the sizes of `cfg` (the arguments of the official builders), in eval
    mode."""
    m = import_official().modeling
    G = cfg.grid_size
    sam = m.Sam(
        image_encoder=m.ImageEncoderViT(
            depth=cfg.encoder_depth,
            embed_dim=cfg.encoder_embed_dim,
            img_size=cfg.image_size,
            mlp_ratio=4,
            norm_layer=partial(nn.LayerNorm, eps=1e-6),
            num_heads=cfg.encoder_num_heads,
            patch_size=cfg.patch_size,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=cfg.encoder_global_attn_indexes,
            window_size=cfg.window_size,
            out_chans=cfg.prompt_embed_dim,
        ),
        prompt_encoder=m.PromptEncoder(
            embed_dim=cfg.prompt_embed_dim,
            image_embedding_size=(G, G),
            input_image_size=(cfg.image_size, cfg.image_size),
            mask_in_chans=cfg.mask_in_chans,
        ),
        mask_decoder=m.MaskDecoder(
            num_multimask_outputs=3,
            transformer=m.TwoWayTransformer(
                depth=2,
                embedding_dim=cfg.prompt_embed_dim,
                mlp_dim=cfg.decoder_mlp_dim,
                num_heads=cfg.decoder_num_heads,
            ),
            transformer_dim=cfg.prompt_embed_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
        ),
        pixel_mean=list(PIXEL_MEAN),
        pixel_std=list(PIXEL_STD),
    )
    return sam.eval()


# ----------------------------------------------------------------------------------------------
# Random weights for every tensor of the state dict
# ----------------------------------------------------------------------------------------------


@torch.no_grad()
def randomize_(model: nn.Module, seed: int) -> nn.Module:
    """Overwrite EVERY tensor of model.state_dict() with seeded random values, scaled to keep
    activations sane.

    SAM initialises pos_embed and rel_pos_* to zeros and LayerNorms to (1, 0); a parity test on such
    weights could not see a wrong positional encoding or a swapped norm, so everything is drawn
    here: LayerNorm weights 1 + N(0, 0.1^2), biases N(0, 0.1^2), linear / conv weights N(0, 1 /
    fan_in), rel_pos N(0, 1 / head size) (attention biases of order 1), pos_embed N(0, 0.5^2),
    embeddings and the Fourier gaussian matrix N(0, 1). The hypernetwork MLPs' 3 layers get a gain
    of 1.8 each (~6 in all) so that the low-res logits are of order 1-10, of both signs.
    """
    g = torch.Generator().manual_seed(seed)

    def draw(t: torch.Tensor, std: float, mean: float = 0.0) -> None:
        t.copy_(mean + std * torch.randn(t.shape, generator=g, dtype=torch.float64).to(t.dtype))

    # persistent tensors only (not Sam's pixel_mean / pixel_std)
    keys, done = set(model.state_dict()), set()
    for mod_name, mod in model.named_modules():
        prefix = f"{mod_name}." if mod_name else ""
        own = dict(mod.named_parameters(recurse=False)) | dict(mod.named_buffers(recurse=False))
        for name, t in own.items():
            if prefix + name not in keys:
                continue
            is_norm = isinstance(mod, nn.LayerNorm) or type(mod).__name__ == "LayerNorm2d"
            if is_norm:
                draw(t, 0.1, 1.0 if name == "weight" else 0.0)
            elif name == "bias":
                draw(t, 0.1)
            elif name == "weight" and isinstance(mod, nn.ConvTranspose2d):
                # (in, out, k, k), stride = k: each output sees `in` inputs
                draw(t, 1 / math.sqrt(t.shape[0]))
            elif name == "weight" and isinstance(mod, (nn.Linear, nn.Conv2d)):
                # 1.8^3 ~ 6: logits of order 1-10
                gain = 1.8 if "output_hypernetworks_mlps" in prefix else 1.0
                draw(t, gain / math.sqrt(t[0].numel()))
            elif name.startswith("rel_pos"):
                draw(t, 1 / math.sqrt(t.shape[-1]))
            elif name == "pos_embed":
                draw(t, 0.5)
            else:  # nn.Embedding weights, positional_encoding_gaussian_matrix
                draw(t, 1.0)
            done.add(prefix + name)
    missed = keys - done
    assert not missed, f"randomize_ left tensors untouched: {sorted(missed)[:5]}"
    return model


def random_sama(cfg: SamConfig, seed: int, **switches) -> SAMA:
    """A SAMA of SAM config cfg with every tensor random (randomize_), its BatchNorm variances
    positive; switches: SAMA's (use_mvle=False, ...)."""
    torch.manual_seed(0)
    sama = randomize_(SAMA(Sam(cfg), **switches), seed=seed).eval()
    with torch.no_grad():
        for m in sama.modules():  # randomize_ draws variances of either sign: make them variances
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_var.abs_().add_(0.1)
    return sama


DEFAULT_THREADS = torch.get_num_threads()


@contextlib.contextmanager
def torch_threads(n: int):
    """Run a block with n intra-op threads. Small models are faster on one thread, and on a busy
    machine two spinning OpenMP threads per process can make a test 10x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def one_thread():
    """For modules of small-model tests: `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="session")
def official() -> types.SimpleNamespace:
    return import_official()


@pytest.fixture
def official_checkpoint(tmp_path, official):
    """Factory: (cfg, seed) -> (randomised official Sam, path of its state_dict saved as a .pth)."""

    def make(cfg: SamConfig, seed: int = 0, name: str = "sam.pth"):
        model = randomize_(build_official_sam(cfg), seed)
        path = tmp_path / name
        torch.save(model.state_dict(), path)
        return model, path

    return make


# ----------------------------------------------------------------------------------------------
# Synthetic images and the parity report (largest differences seen, printed at the end of the run)
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    """The toy datasets (synthetic.make_toy), small: shared by the readers', data's and
    synthetic's tests."""
    root = tmp_path_factory.mktemp("toy")
    synthetic.make_toy(root, seed=0, n_train=8, n_val=4, n_test=2, n_fg=8, n_comp=8, n_aim500=4,
                       n_bg=4)
    return root


def backgrounds(toy: Path) -> list[Path]:
    return image_files(toy / "backgrounds")


def save(array, path: Path, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kw)
    return path


def random_image(h: int, w: int, seed: int) -> np.ndarray:
    """(h, w, 3) uint8: smooth colour gradients plus noise, so resizing has real work to do."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([np.sin(6 * x + c) * np.cos(4 * y - c) for c in rng.uniform(0, 3, 3)], axis=-1)
    img = 127.5 + 90 * base + rng.normal(0, 25, (h, w, 3))
    return img.clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def exported(tmp_path_factory) -> Path:
    """The stand-in exported once by the command line, float32 and int8 (onnxruntime and
    onnxscript needed)."""
    from deploy import export_onnx  # requirements-onnx.txt

    out = tmp_path_factory.mktemp("onnx") / "standin"
    assert export_onnx.main(["--checkpoint", str(SAMA_PT), "--sam-checkpoint", str(SAM_PTH),
                             "--out", str(out), "--quantize"]) == 0
    return out


def sama_maps(predictor, points=None, labels=None, box=None) -> dict[str, np.ndarray]:
    """sama.SamaPredictor.predict_torch on one prompt in image pixels, as numpy: "seg_logits",
    "alpha" and "sam_logits" at the image's size (the maps predictor.Predictor reads)."""
    S, device = predictor.model.sam.config.image_size, predictor.model.sam.device
    prompts = prompt_tensors(points, labels, box, predictor.original_size, S, device)
    return {name: m[0].cpu().numpy() for name, m in predictor.predict_torch(*prompts).items()}


PARITY: dict[tuple[str, str, str], float] = defaultdict(float)


def record(scale: str, prompt: str, quantity: str, diff: float) -> None:
    """Keep the largest |ours - official| per (model size, prompt type, quantity)."""
    key = (scale, prompt, quantity)
    PARITY[key] = max(PARITY[key], float(diff))


def pytest_terminal_summary(terminalreporter):
    if not PARITY:
        return
    tr = terminalreporter
    tr.section("SAM parity: largest |ours - official| (float32)")
    quantities = sorted({q for _, _, q in PARITY})
    rows = sorted({(s, p) for s, p, _ in PARITY})
    tr.write_line(f"{'model':<8} {'prompt':<28} " + " ".join(f"{q:>12}" for q in quantities))
    for s, p in rows:
        cells = [
            f"{PARITY[(s, p, q)]:12.2e}" if (s, p, q) in PARITY else f"{'-':>12}"
            for q in quantities
        ]
        tr.write_line(f"{s:<8} {p:<28} " + " ".join(cells))
