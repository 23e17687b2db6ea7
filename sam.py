"""Segment Anything (SAM), the paper's "Preliminary", written from scratch in plain PyTorch.

SAM (Kirillov et al. 2023, "Segment Anything") has three parts: a ViT image encoder that turns a
1024 x 1024 frame into a 64 x 64 map of features, a prompt encoder that turns points, boxes and
masks into tokens, and a two-way transformer mask decoder. Every attribute name here is the key of
the official checkpoints (`image_encoder.blocks.3.attn.qkv`, `mask_decoder.output_upscaling`, ...),
so loading one is a key-for-key copy (load_sam_weights.py). SAMA (sama.py) keeps all of it frozen.

Shape notation, used in every shape comment here and in sama.py:
    B  batch            S  frame side in pixels (1024 for the official variants)
    G  token-grid side (S / 16 = 64)      D  ViT width (768 / 1024 / 1280)
    C  decoder width (256)                N  number of tokens
    nh number of heads  hs head size      T  number of prompt + output tokens
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# SAM's normalisation, frame size and prompt scaling in numpy (the ONNX predictor shares them),
# and the prompt's checks every predictor shares
from frame import (
    PIXEL_MEAN,
    PIXEL_STD,
    check_finite_coordinates,
    check_point_labels,
    preprocess_shape,
    resize_longest_side,
    scale_coords,
)

# ----------------------------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SamConfig:
    """One SAM variant. The official ones differ only in the image encoder's size."""

    name: str
    encoder_embed_dim: int
    encoder_depth: int
    encoder_num_heads: int
    encoder_global_attn_indexes: tuple[int, ...]
    image_size: int = 1024  # S
    patch_size: int = 16
    window_size: int = 14
    prompt_embed_dim: int = 256  # C
    decoder_mlp_dim: int = 2048
    decoder_num_heads: int = 8
    mask_in_chans: int = 16

    @property
    def grid_size(self) -> int:  # G
        return self.image_size // self.patch_size


SAM_VARIANTS = {
    "vit_b": SamConfig("vit_b", 768, 12, 12, (2, 5, 8, 11)),
    "vit_l": SamConfig("vit_l", 1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": SamConfig("vit_h", 1280, 32, 16, (7, 15, 23, 31)),
    # Small enough to train on two CPU cores in minutes: tests and the demo use it.
    "tiny": SamConfig(
        "tiny", 64, 4, 2, (1, 3), image_size=256, window_size=4,
        prompt_embed_dim=64, decoder_mlp_dim=256, decoder_num_heads=4,
    ),
}


# ----------------------------------------------------------------------------------------------
# Preprocessing (SAM's: longest side to S, normalise, pad bottom/right with zeros; frame.py)
# ----------------------------------------------------------------------------------------------


def normalize_and_pad(image: torch.Tensor, size: int) -> torch.Tensor:
    """(..., 3, h, w) float on 0-255 -> (..., 3, size, size); padding comes after normalisation."""
    mean = torch.tensor(PIXEL_MEAN, device=image.device).view(3, 1, 1)
    std = torch.tensor(PIXEL_STD, device=image.device).view(3, 1, 1)
    x = (image - mean) / std
    h, w = x.shape[-2:]
    return F.pad(x, (0, size - w, 0, size - h))


def image_to_frame(
    image: np.ndarray, size: int, device: Optional[torch.device] = None
) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (3, size, size) float32 on device: SAM's input frame for this image.

    The resized image travels as uint8 (a quarter of the float bytes) and is normalised there."""
    resized = resize_longest_side(image, size)
    x = torch.from_numpy(resized).to(device).permute(2, 0, 1).float()  # (3, h', w')
    return normalize_and_pad(x, size)


def prompt_tensors(
    point_coords: Optional[np.ndarray],
    point_labels: Optional[np.ndarray],
    box: Optional[np.ndarray],
    original_size: tuple[int, int],
    image_size: int,
    device: torch.device,
) -> tuple[Optional[torch.Tensor], Optional[torch.Tensor], Optional[torch.Tensor]]:
    """Numpy prompts in image pixels -> (points (1, N, 2), labels (1, N), boxes (1, 4)) in frame
    pixels. One label per point and finite coordinates, or frame.PromptError (a ValueError)."""
    points = labels = boxes = None
    if point_coords is not None:
        coords = np.asarray(point_coords, dtype=np.float64).reshape(-1, 2)
        labels = check_point_labels(point_labels, len(coords))
        check_finite_coordinates(None, coords)
        coords = scale_coords(coords, original_size, image_size)
        points = torch.as_tensor(coords, dtype=torch.float32, device=device)[None]
        labels = torch.as_tensor(labels, dtype=torch.int64, device=device)[None]
    if box is not None:
        corners = np.asarray(box, dtype=np.float64).reshape(-1, 2, 2)
        check_finite_coordinates(corners.reshape(-1), ())
        corners = scale_coords(corners, original_size, image_size)
        boxes = torch.as_tensor(corners.reshape(-1, 4), dtype=torch.float32, device=device)
    return points, labels, boxes


def postprocess_masks(
    logits: torch.Tensor,
    image_size: int,
    input_size: tuple[int, int],
    original_size: tuple[int, int],
) -> torch.Tensor:
    """(B, M, h, w) logits -> (B, M, H, W): up to the frame, crop the padding, resize to the
    original size."""
    x = F.interpolate(logits, (image_size, image_size), mode="bilinear", align_corners=False)
    x = x[..., : input_size[0], : input_size[1]]
    return F.interpolate(x, original_size, mode="bilinear", align_corners=False)


# ----------------------------------------------------------------------------------------------
# Building blocks shared by the encoder and the decoder
# ----------------------------------------------------------------------------------------------


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of a (B, C, H, W) map."""

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class MLPBlock(nn.Module):
    """Two linear layers with an activation between (the transformer MLP)."""

    def __init__(self, embedding_dim: int, mlp_dim: int, act: type[nn.Module] = nn.GELU) -> None:
        super().__init__()
        self.lin1 = nn.Linear(embedding_dim, mlp_dim)
        self.lin2 = nn.Linear(mlp_dim, embedding_dim)
        self.act = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin2(self.act(self.lin1(x)))


class MLP(nn.Module):
    """num_layers linear layers with ReLU between (the hypernetwork and IoU-head MLPs)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int) -> None:
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


# ----------------------------------------------------------------------------------------------
# SAM image encoder: ViT with windowed attention and decomposed relative positions
# ----------------------------------------------------------------------------------------------


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)  # (B, 3, S, S) -> (B, G, G, D)


def get_rel_pos(q_size: int, k_size: int, rel_pos: torch.Tensor) -> torch.Tensor:
    """Relative-position embeddings (q_size, k_size, hs) for every query / key offset along one
    axis."""
    max_rel_dist = 2 * max(q_size, k_size) - 1
    if rel_pos.shape[0] != max_rel_dist:  # a frame of another size: interpolate the table
        table = rel_pos.reshape(1, rel_pos.shape[0], -1).permute(0, 2, 1)  # (1, hs, L)
        table = F.interpolate(table, size=max_rel_dist, mode="linear")
        rel_pos = table.reshape(-1, max_rel_dist).permute(1, 0)  # (max_rel_dist, hs)
    q_coords = torch.arange(q_size, device=rel_pos.device)[:, None] * max(k_size / q_size, 1.0)
    k_coords = torch.arange(k_size, device=rel_pos.device)[None, :] * max(q_size / k_size, 1.0)
    relative = (q_coords - k_coords) + (k_size - 1) * max(q_size / k_size, 1.0)
    return rel_pos[relative.long()]


def rel_pos_terms(
    q: torch.Tensor, Rh: torch.Tensor, Rw: torch.Tensor, w: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two terms of the decomposed relative-position bias of queries q (b, nh, r*w, hs) on r
    grid rows: rel_h[i, k] = q_i . Rh[row_i, k] (b, nh, r*w, h) and rel_w[i, k] = q_i . Rw[col_i, k]
    (b, nh, r*w, w), q unscaled; Rh (r, h, hs) holds the queries' rows, Rw (w, w, hs)."""
    b, nh, _, hs = q.shape
    r, h = Rh.shape[:2]
    q = q.reshape(b, nh, r, w, hs)
    rel_h = torch.einsum("bnrwc,rkc->bnrwk", q, Rh)  # (b, nh, r, w, h)
    rel_w = torch.einsum("bnrwc,wkc->bnrwk", q, Rw)  # (b, nh, r, w, w)
    return rel_h.reshape(b, nh, r * w, h), rel_w.reshape(b, nh, r * w, w)


def rel_pos_bias(q: torch.Tensor, Rh: torch.Tensor, Rw: torch.Tensor, w: int) -> torch.Tensor:
    """The decomposed relative-position bias of queries q (b, nh, r*w, hs) on r grid rows:
    bias[i, j] = rel_h[i, row_j] + rel_w[i, col_j] (rel_pos_terms). Returns (b, nh, r*w, h*w)."""
    rel_h, rel_w = rel_pos_terms(q, Rh, Rw, w)
    b, nh, rw, h = rel_h.shape
    return (rel_h[..., :, None] + rel_w[..., None, :]).reshape(b, nh, rw, h * w)


def folded_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, Rh: torch.Tensor, Rw: torch.Tensor,
    scale: float,
) -> torch.Tensor:
    """softmax((q * scale) k^T + bias) v with the bias folded into the queries and keys, so that
    PyTorch's fused kernel runs with no bias tensor (on CUDA, its flash kernel).

    bias[i, j] = rel_h[i, row_j] + rel_w[i, col_j] (rel_pos_terms) is the dot product of
    [rel_h[i], rel_w[i]] with [onehot(row_j), onehot(col_j)], hence
        q' = [q * scale, rel_h, rel_w],  k' = [k, onehot(row), onehot(col)],
        softmax(q' k'^T) v = softmax((q * scale) k^T + bias) v.
    q, k, v (B, nh, h*w, hs), Rh (h, h, hs), Rw (w, w, hs) -> (B, nh, h*w, hs). The head size
    hs + h + w is padded with zeros to a multiple of 8, v's too: the flash kernel takes equal head
    sizes only.
    """
    B, nh, hw, hs = q.shape
    h, w = Rh.shape[0], Rw.shape[0]
    rel_h, rel_w = rel_pos_terms(q, Rh, Rw, w)  # (B, nh, hw, h), (B, nh, hw, w)
    # key j = (row, column), row-major: [onehot(row_j), onehot(col_j)] (hw, h + w)
    eye_h = torch.eye(h, dtype=k.dtype, device=k.device)
    eye_w = torch.eye(w, dtype=k.dtype, device=k.device)
    onehot = torch.cat([eye_h.repeat_interleave(w, dim=0), eye_w.repeat(h, 1)], dim=-1)
    pad = -(hs + h + w) % 8
    q = F.pad(torch.cat([q * scale, rel_h, rel_w], dim=-1), (0, pad))  # (B, nh, hw, hs+h+w+pad)
    k = F.pad(torch.cat([k, onehot.expand(B, nh, hw, h + w)], dim=-1), (0, pad))
    v = F.pad(v, (0, h + w + pad))
    return F.scaled_dot_product_attention(q, k, v, scale=1.0)[..., :hs]


class Attention(nn.Module):
    """Multi-head self-attention over an (h, w) grid with decomposed relative positions (MViTv2):
    softmax((q * scale) k^T + bias) v, the bias from a learned embedding per row and column offset.

    `form` picks one of three equal computations (tests compare them): "textbook" (below, the one
    to read); "blockwise", PyTorch's fused kernel with the bias built for a few images or a few
    query rows at a time (BIAS_BLOCK numbers; a global block's bias is (nh, hw, hw) per image, 200M
    numbers on a 64 x 64 grid); "folded" (folded_attention), the bias folded into q and k, so the
    fused kernel needs no bias at all. None, the default, takes DEVICE_FORM's for the input's
    device. The CPU keeps blockwise, the fastest there; on CUDA folding lets the flash kernel run.
    The times of the three forms: BENCHMARKS.md (`python -m benchmarks.benchmark --optimisations`).
    """

    BIAS_BLOCK = {"cpu": 2**24, "cuda": 2**28}  # numbers in one block of the bias, when blockwise
    DEVICE_FORM = {"cuda": "folded"}  # every other device: "blockwise"
    FORMS = ("textbook", "blockwise", "folded")

    def __init__(self, dim: int, num_heads: int, input_size: tuple[int, int]) -> None:
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * input_size[0] - 1, head_dim))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * input_size[1] - 1, head_dim))
        self.form: Optional[str] = None  # one of FORMS; None: DEVICE_FORM's

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, h, w, D) -> (B, h, w, D)."""
        B, h, w, _ = x.shape
        qkv = self.qkv(x).reshape(B, h * w, 3, self.num_heads, -1)  # (B, hw, 3, nh, hs)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, nh, hw, hs)
        Rh = get_rel_pos(h, h, self.rel_pos_h)  # (h, h, hs)
        Rw = get_rel_pos(w, w, self.rel_pos_w)  # (w, w, hs)
        form = self.form or self.DEVICE_FORM.get(x.device.type, "blockwise")
        if form not in self.FORMS:
            raise ValueError(f"Attention.form must be one of {self.FORMS} or None, got {form!r}")
        if form == "folded":
            x = folded_attention(q, k, v, Rh, Rw, self.scale)  # (B, nh, hw, hs)
        elif form == "blockwise":
            x = torch.empty_like(q, memory_format=torch.contiguous_format)  # (B, nh, hw, hs)
            per_image = self.num_heads * (h * w) ** 2  # numbers in one image's bias
            block = self.BIAS_BLOCK["cpu" if x.device.type == "cpu" else "cuda"]
            n = max(1, block // per_image)  # images per block (windows: many)
            rows = h if n > 1 else max(1, block // (per_image // h))  # query rows per block
            for i in range(0, B, n):
                for r in range(0, h, rows):
                    b, rs = slice(i, i + n), slice(r * w, (r + rows) * w)  # rows r .. r + rows
                    bias = rel_pos_bias(q[b, :, rs], Rh[r : r + rows], Rw, w)
                    x[b, :, rs] = F.scaled_dot_product_attention(
                        q[b, :, rs], k[b], v[b], attn_mask=bias)
        else:  # the textbook form
            attn = (q * self.scale) @ k.transpose(-2, -1)  # (B, nh, hw, hw)
            attn = attn + rel_pos_bias(q, Rh, Rw, w)
            x = attn.softmax(dim=-1) @ v  # (B, nh, hw, hs)
        x = x.transpose(1, 2).reshape(B, h, w, -1)  # (B, h, w, D)
        return self.proj(x)


def window_partition(x: torch.Tensor, window_size: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """(B, H, W, D) -> (B * nW, ws, ws, D) non-overlapping windows, zero-padding H and W first."""
    B, H, W, D = x.shape
    pad_h = (window_size - H % window_size) % window_size
    pad_w = (window_size - W % window_size) % window_size
    x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    Hp, Wp = H + pad_h, W + pad_w
    x = x.view(B, Hp // window_size, window_size, Wp // window_size, window_size, D)
    x = x.permute(0, 1, 3, 2, 4, 5)  # (B, Hp/ws, Wp/ws, ws, ws, D)
    windows = x.reshape(-1, window_size, window_size, D)  # (B*nW, ws, ws, D)
    return windows, (Hp, Wp)


def window_unpartition(
    windows: torch.Tensor, window_size: int, pad_hw: tuple[int, int], hw: tuple[int, int]
) -> torch.Tensor:
    """(B * nW, ws, ws, D) -> (B, H, W, D), dropping the padding."""
    Hp, Wp = pad_hw
    H, W = hw
    B = windows.shape[0] // (Hp * Wp // window_size // window_size)
    x = windows.view(B, Hp // window_size, Wp // window_size, window_size, window_size, -1)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(B, Hp, Wp, -1)  # (B, Hp, Wp, D)
    return x[:, :H, :W, :].contiguous()


class Block(nn.Module):
    """ViT block; window_size 0 means global attention over the whole grid."""

    def __init__(
        self, dim: int, num_heads: int, window_size: int, input_size: tuple[int, int]
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        attn_size = input_size if window_size == 0 else (window_size, window_size)
        self.attn = Attention(dim, num_heads, attn_size)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLPBlock(dim, dim * 4)
        self.window_size = window_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm1(x)
        if self.window_size > 0:
            H, W = x.shape[1], x.shape[2]
            x, pad_hw = window_partition(x, self.window_size)
            x = self.attn(x)
            x = window_unpartition(x, self.window_size, pad_hw, (H, W))
        else:
            x = self.attn(x)
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class ImageEncoderViT(nn.Module):
    """SAM's image encoder. Returns the embedding and the "early" feature (first global block)."""

    def __init__(self, cfg: SamConfig) -> None:
        super().__init__()
        G, D = cfg.grid_size, cfg.encoder_embed_dim
        self.img_size = cfg.image_size
        self.patch_embed = PatchEmbed(cfg.patch_size, D)
        self.pos_embed = nn.Parameter(torch.zeros(1, G, G, D))
        global_blocks = cfg.encoder_global_attn_indexes
        self.blocks = nn.ModuleList(
            Block(D, cfg.encoder_num_heads, 0 if i in global_blocks else cfg.window_size, (G, G))
            for i in range(cfg.encoder_depth)
        )
        self.early_index = cfg.encoder_global_attn_indexes[0]
        C = cfg.prompt_embed_dim
        self.neck = nn.Sequential(
            nn.Conv2d(D, C, kernel_size=1, bias=False),
            LayerNorm2d(C),
            nn.Conv2d(C, C, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(C),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, S, S) normalised frames -> embedding (B, C, G, G), early feature (B, G, G, D)."""
        x = self.patch_embed(x) + self.pos_embed  # (B, G, G, D)
        early = x
        for i, blk in enumerate(self.blocks):
            x = blk(x)
            if i == self.early_index:
                early = x
        return self.neck(x.permute(0, 3, 1, 2)), early  # (B, C, G, G), (B, G, G, D)


# ----------------------------------------------------------------------------------------------
# SAM prompt encoder
# ----------------------------------------------------------------------------------------------


class PositionEmbeddingRandom(nn.Module):
    """Random Fourier features of normalised (x, y): [sin(2 pi p G), cos(2 pi p G)],
    p in [-1, 1]."""

    def __init__(self, num_pos_feats: int) -> None:
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn(2, num_pos_feats))

    def _pe_encoding(self, coords: torch.Tensor) -> torch.Tensor:
        """(..., 2) in [0, 1] -> (..., C)."""
        gaussian = self.positional_encoding_gaussian_matrix.to(coords.dtype)  # (2, C/2)
        coords = (2 * coords - 1) @ gaussian  # (..., C/2)
        coords = 2 * math.pi * coords
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1)

    def forward(self, size: tuple[int, int]) -> torch.Tensor:
        """Encoding of the centre of every cell of an (h, w) grid: (C, h, w)."""
        h, w = size
        device = self.positional_encoding_gaussian_matrix.device
        y = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h
        x = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w
        xy = torch.stack(torch.meshgrid(x, y, indexing="xy"), dim=-1)  # (h, w, 2)
        return self._pe_encoding(xy).permute(2, 0, 1)  # (C, h, w)

    def forward_with_coords(
        self, coords: torch.Tensor, image_size: tuple[int, int]
    ) -> torch.Tensor:
        """(B, N, 2) pixel xy in the frame -> (B, N, C)."""
        coords = coords.clone()
        coords[..., 0] = coords[..., 0] / image_size[1]
        coords[..., 1] = coords[..., 1] / image_size[0]
        return self._pe_encoding(coords.to(torch.float32))


class PromptEncoder(nn.Module):
    """Points, boxes -> sparse tokens (B, T, C); a low-res mask -> dense embedding (B, C, G, G)."""

    def __init__(self, cfg: SamConfig) -> None:
        super().__init__()
        C, G, mic = cfg.prompt_embed_dim, cfg.grid_size, cfg.mask_in_chans
        self.embed_dim = C
        self.input_image_size = (cfg.image_size, cfg.image_size)
        self.image_embedding_size = (G, G)
        self.pe_layer = PositionEmbeddingRandom(C // 2)
        # labels: 0 negative point, 1 positive point, 2 box top-left, 3 box bottom-right
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, C) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, C)
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mic // 4, kernel_size=2, stride=2),
            LayerNorm2d(mic // 4),
            nn.GELU(),
            nn.Conv2d(mic // 4, mic, kernel_size=2, stride=2),
            LayerNorm2d(mic),
            nn.GELU(),
            nn.Conv2d(mic, C, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, C)

    def get_dense_pe(self) -> torch.Tensor:
        """Positional encoding of the image tokens: (1, C, G, G)."""
        return self.pe_layer(self.image_embedding_size).unsqueeze(0)

    def embed_points(self, points: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(B, N, 2) xy in frame pixels and their (B, N) labels -> tokens (B, N, C). The labels are
        those of SAM's ONNX export: -1 not a point (padding), 0 a negative point, 1 a positive
        one, 2 and 3 a box's top-left and bottom-right corners."""
        points = points + 0.5  # shift to the centre of the pixel
        emb = self.pe_layer.forward_with_coords(points, self.input_image_size)  # (B, N, C)
        labels = labels[..., None]
        emb = torch.where(labels == -1, self.not_a_point_embed.weight, emb)
        for label, embedding in enumerate(self.point_embeddings):
            emb = emb + torch.where(labels == label, embedding.weight, 0.0)
        return emb

    def forward(
        self,
        points: Optional[tuple[torch.Tensor, torch.Tensor]],
        boxes: Optional[torch.Tensor],
        masks: Optional[torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """points ((B, N, 2), (B, N)), boxes (B, 4), masks (B, 1, 4G, 4G) -> sparse tokens
        (B, T, C), dense embedding (B, C, G, G).

        Point label -1 marks padding ("not a point"), as in SAM.
        """
        point_coords = points[0] if points is not None else None
        given = [p for p in (point_coords, boxes, masks) if p is not None]
        bs = given[0].shape[0] if given else 1
        sparse = torch.empty((bs, 0, self.embed_dim), device=self.no_mask_embed.weight.device)
        if points is not None:
            coords, labels = points
            if boxes is None:  # without a box SAM appends one "not a point" token
                coords = torch.cat([coords, coords.new_zeros(coords.shape[0], 1, 2)], dim=1)
                labels = torch.cat([labels, -labels.new_ones(labels.shape[0], 1)], dim=1)
            sparse = torch.cat([sparse, self.embed_points(coords, labels)], dim=1)
        if boxes is not None:
            corners = boxes.reshape(-1, 2, 2)  # (B, 2, 2): the two corners as points
            corner_labels = torch.tensor([2, 3], device=boxes.device).expand(len(corners), 2)
            sparse = torch.cat([sparse, self.embed_points(corners, corner_labels)], dim=1)
        if masks is not None:
            dense = self.mask_downscaling(masks)
        else:
            G = self.image_embedding_size
            dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(bs, -1, G[0], G[1])
        return sparse, dense


# ----------------------------------------------------------------------------------------------
# SAM mask decoder: two-way transformer + output tokens + hypernetworks
# ----------------------------------------------------------------------------------------------


class DecoderAttention(nn.Module):
    """Multi-head attention whose q/k/v are projected to C / downsample_rate channels.

    Named `Attention` in SAM; the checkpoint keys (q_proj, k_proj, v_proj, out_proj) are the same.
    """

    def __init__(self, embedding_dim: int, num_heads: int, downsample_rate: int = 1) -> None:
        super().__init__()
        self.num_heads = num_heads
        internal_dim = embedding_dim // downsample_rate
        self.q_proj = nn.Linear(embedding_dim, internal_dim)
        self.k_proj = nn.Linear(embedding_dim, internal_dim)
        self.v_proj = nn.Linear(embedding_dim, internal_dim)
        self.out_proj = nn.Linear(internal_dim, embedding_dim)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """q (B, Nq, C), k and v (B, Nk, C) -> (B, Nq, C)."""
        return self.attend(self.q_proj(q), self.k_proj(k), self.v_proj(v))

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Attention on projected q (B, Nq, C'), k and v (B, Nk, C') -> (B, Nq, C)."""
        B, nh = q.shape[0], self.num_heads
        q = q.reshape(B, q.shape[1], nh, -1).transpose(1, 2)  # (B, nh, Nq, hs)
        k = k.reshape(B, k.shape[1], nh, -1).transpose(1, 2)  # (B, nh, Nk, hs)
        v = v.reshape(B, v.shape[1], nh, -1).transpose(1, 2)  # (B, nh, Nk, hs)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, nh, Nq, hs)
        return self.out_proj(out.transpose(1, 2).flatten(2))  # (B, Nq, C)


class TwoWayAttentionBlock(nn.Module):
    """Tokens self-attend, tokens attend to the image, an MLP on the tokens, the image attends to
    the tokens."""

    def __init__(self, C: int, num_heads: int, mlp_dim: int, skip_first_layer_pe: bool) -> None:
        super().__init__()
        self.self_attn = DecoderAttention(C, num_heads)
        self.norm1 = nn.LayerNorm(C)
        self.cross_attn_token_to_image = DecoderAttention(C, num_heads, downsample_rate=2)
        self.norm2 = nn.LayerNorm(C)
        self.mlp = MLPBlock(C, mlp_dim, act=nn.ReLU)
        self.norm3 = nn.LayerNorm(C)
        self.norm4 = nn.LayerNorm(C)
        self.cross_attn_image_to_token = DecoderAttention(C, num_heads, downsample_rate=2)
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(
        self,
        queries: torch.Tensor,
        keys: torch.Tensor,
        query_pe: torch.Tensor,
        key_pe: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """queries (B, T, C) tokens, keys (B, G*G, C) image tokens, with their PEs -> both
        updated."""
        if self.skip_first_layer_pe:  # the first layer replaces the tokens (no residual, no PE)
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)
        q, k = queries + query_pe, keys + key_pe  # the keys do not change before the layer's end
        queries = self.norm2(queries + self.cross_attn_token_to_image(q, k, keys))
        queries = self.norm3(queries + self.mlp(queries))
        q = queries + query_pe
        keys = self.norm4(keys + self.cross_attn_image_to_token(k, q, queries))
        return queries, keys


class TwoWayTransformer(nn.Module):
    def __init__(self, depth: int, C: int, num_heads: int, mlp_dim: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(C, num_heads, mlp_dim, skip_first_layer_pe=(i == 0))
            for i in range(depth)
        )
        self.final_attn_token_to_image = DecoderAttention(C, num_heads, downsample_rate=2)
        self.norm_final_attn = nn.LayerNorm(C)

    def final_attention(
        self,
        queries: torch.Tensor,
        keys: torch.Tensor,
        query_pe: torch.Tensor,
        key_pe: torch.Tensor,
    ) -> torch.Tensor:
        """The last token-to-image attention, after all layers (SAMA runs it on F'_out)."""
        q, k = queries + query_pe, keys + key_pe
        return self.norm_final_attn(queries + self.final_attn_token_to_image(q, k, keys))

    def forward(
        self, image_embedding: torch.Tensor, image_pe: torch.Tensor, point_embedding: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """image (B, C, G, G), its PE (B, C, G, G), tokens (B, T, C) -> tokens (B, T, C), image
        tokens (B, G*G, C)."""
        keys = image_embedding.flatten(2).transpose(1, 2)  # (B, G*G, C)
        key_pe = image_pe.flatten(2).transpose(1, 2)  # (B, G*G, C)
        queries = point_embedding
        for layer in self.layers:
            queries, keys = layer(queries, keys, point_embedding, key_pe)
        return self.final_attention(queries, keys, point_embedding, key_pe), keys


class MaskDecoder(nn.Module):
    """Predicts 4 masks (1 single + 3 multimask) and their IoU from image and prompt embeddings."""

    def __init__(self, cfg: SamConfig, num_multimask_outputs: int = 3) -> None:
        super().__init__()
        C = cfg.prompt_embed_dim
        self.transformer_dim = C
        self.transformer = TwoWayTransformer(2, C, cfg.decoder_num_heads, cfg.decoder_mlp_dim)
        self.num_mask_tokens = num_multimask_outputs + 1
        self.iou_token = nn.Embedding(1, C)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, C)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(C, C // 4, kernel_size=2, stride=2),
            LayerNorm2d(C // 4),
            nn.GELU(),
            nn.ConvTranspose2d(C // 4, C // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(C, C, C // 8, 3) for _ in range(self.num_mask_tokens))
        self.iou_prediction_head = MLP(C, 256, self.num_mask_tokens, 3)

    def output_tokens(
        self, batch_size: int, sparse_prompt_embeddings: torch.Tensor
    ) -> torch.Tensor:
        """[IoU token, 4 mask tokens, prompt tokens]: (B, T, C)."""
        out = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)  # (5, C)
        out = out.unsqueeze(0).expand(batch_size, -1, -1)
        return torch.cat([out, sparse_prompt_embeddings], dim=1)

    def predict_from_tokens(
        self, hs: torch.Tensor, src: torch.Tensor, G: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoder outputs hs (B, T, C), src (B, G*G, C) -> masks (B, 4, 4G, 4G), IoU (B, 4)."""
        iou_token_out = hs[:, 0, :]
        mask_tokens_out = hs[:, 1 : 1 + self.num_mask_tokens, :]  # (B, 4, C)
        src = src.transpose(1, 2).unflatten(2, (G, G))  # (B, C, G, G)
        upscaled = self.output_upscaling(src)  # (B, C/8, 4G, 4G)
        hyper_in = torch.stack(
            [mlp(mask_tokens_out[:, i, :]) for i, mlp in enumerate(self.output_hypernetworks_mlps)],
            dim=1,
        )  # (B, 4, C/8)
        b, c, h, w = upscaled.shape
        masks = (hyper_in @ upscaled.view(b, c, h * w)).view(b, -1, h, w)  # (B, 4, 4G, 4G)
        return masks, self.iou_prediction_head(iou_token_out)

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        multimask_output: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """image (1 or B, C, G, G), PE (1, C, G, G), sparse (B, T, C), dense (B, C, G, G).

        Returns low-res logits (B, M, 4G, 4G) and IoU scores (B, M); M = 3 with multimask, else 1.
        """
        B = max(sparse_prompt_embeddings.shape[0], image_embeddings.shape[0])
        G = image_embeddings.shape[-1]
        tokens = self.output_tokens(B, sparse_prompt_embeddings.expand(B, -1, -1))
        src = image_embeddings.expand(B, -1, -1, -1) + dense_prompt_embeddings
        pos_src = image_pe.expand(B, -1, -1, -1)
        hs, src = self.transformer(src, pos_src, tokens)
        masks, iou_pred = self.predict_from_tokens(hs, src, G)
        sl = slice(1, None) if multimask_output else slice(0, 1)
        return masks[:, sl], iou_pred[:, sl]


# ----------------------------------------------------------------------------------------------
# SAM
# ----------------------------------------------------------------------------------------------


class Sam(nn.Module):
    """Segment Anything. Its state_dict has exactly the keys of the official checkpoints."""

    mask_threshold = 0.0
    # what load_sam_weights read the weights from (a CheckpointRecord); None: made in memory
    checkpoint_record = None

    def __init__(self, config: SamConfig) -> None:
        super().__init__()
        self.config = config
        self.image_encoder = ImageEncoderViT(config)
        self.prompt_encoder = PromptEncoder(config)
        self.mask_decoder = MaskDecoder(config)

    @property
    def device(self) -> torch.device:
        return self.prompt_encoder.no_mask_embed.weight.device

    def decode(
        self,
        image_embeddings: torch.Tensor,
        points: Optional[torch.Tensor] = None,
        point_labels: Optional[torch.Tensor] = None,
        boxes: Optional[torch.Tensor] = None,
        mask_inputs: Optional[torch.Tensor] = None,
        multimask_output: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompt encoder + mask decoder on (1 or B, C, G, G) embeddings -> logits
        (B, M, 4G, 4G), IoU (B, M)."""
        prompt = (points, point_labels) if points is not None else None
        sparse, dense = self.prompt_encoder(prompt, boxes, mask_inputs)
        dense_pe = self.prompt_encoder.get_dense_pe()
        return self.mask_decoder(image_embeddings, dense_pe, sparse, dense, multimask_output)

    def forward(
        self,
        images: torch.Tensor,
        points: Optional[torch.Tensor] = None,
        point_labels: Optional[torch.Tensor] = None,
        boxes: Optional[torch.Tensor] = None,
        mask_inputs: Optional[torch.Tensor] = None,
        multimask_output: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Batched and differentiable, for training. The official forward batches too, another way:
        it takes a list of dicts (an image and its prompts each), encodes the images as one batch,
        decodes image by image (each with its prompts) and runs under torch.no_grad, returning
        masks thresholded at each image's size. This one takes tensors, decodes the whole batch in
        one pass (one prompt per image) and keeps the autograd graph.

        Args:
            images: (B, 3, S, S) frames from `image_to_frame` (normalised, padded).
            points: (B, N, 2) xy in frame pixels; point_labels (B, N): 1 fg, 0 bg, -1 padding.
            boxes: (B, 4) xyxy in frame pixels.  mask_inputs: (B, 1, 4G, 4G) logits.
        Returns:
            low-res logits (B, M, 4G, 4G) and IoU scores (B, M).
        """
        embeddings, _ = self.image_encoder(images)
        return self.decode(embeddings, points, point_labels, boxes, mask_inputs, multimask_output)


def compile_image_encoder(sam: Sam, views: int, backend: str = "inductor") -> float:
    """torch.compile SAM's image encoder in place (its state dict keeps its keys) and compile it
    now, on `views` blank frames in the caller's autocast and in the module's train / eval mode, so
    that the first image does not pay for it. Returns the seconds that took.

    A choice users make for long runs (train.py / evaluate.py --compile), never a default: the
    compilation takes a while and pays off on the GPU only (BENCHMARKS.md). Another input shape,
    autocast or mode (validation inside training) compiles once more, on its first call.
    """
    sam.image_encoder.compile(backend=backend)
    S = sam.config.image_size
    frames = torch.zeros(views, 3, S, S, device=sam.device)
    start = time.perf_counter()
    with torch.no_grad():
        sam.image_encoder(frames)
    if frames.is_cuda:
        torch.cuda.synchronize(frames.device)
    return time.perf_counter() - start


class SamPredictor:
    """SAM's official predictor, its signatures and returns those of Meta's segment-anything
    `SamPredictor` (tests/test_sam.py compares the two call for call): encode an image once,
    then prompt it as often as you like; predict returns a tuple of masks, scores and low-res
    logits. The project's own predictor contract, the same for SAM and SAMA (a dict of named maps,
    its inputs checked), is predictor.Predictor, which reads SAM through predict_torch.
    """

    def __init__(self, sam: Sam) -> None:
        self.model = sam
        self.reset_image()

    def reset_image(self) -> None:
        self.features: Optional[torch.Tensor] = None
        self.original_size: Optional[tuple[int, int]] = None
        self.input_size: Optional[tuple[int, int]] = None

    @torch.no_grad()
    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        """image: (H, W, 3) uint8, in `image_format` ("RGB" or "BGR")."""
        if image_format not in ("RGB", "BGR"):
            raise ValueError(f"image_format must be 'RGB' or 'BGR', got {image_format!r}")
        if image_format == "BGR":
            image = image[..., ::-1]
        S = self.model.config.image_size
        frame = image_to_frame(np.ascontiguousarray(image), S, self.model.device)
        self.features, _ = self.model.image_encoder(frame[None])
        self.original_size = image.shape[:2]
        self.input_size = preprocess_shape(image.shape[0], image.shape[1], S)

    def predict(
        self,
        point_coords: Optional[np.ndarray] = None,
        point_labels: Optional[np.ndarray] = None,
        box: Optional[np.ndarray] = None,
        mask_input: Optional[np.ndarray] = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Prompts in image pixels. Returns masks (M, H, W) bool (float logits with return_logits),
        scores (M,) and the low-res logits (M, 4G, 4G)."""
        if self.features is None:
            raise RuntimeError("call set_image before predict")
        dev = self.model.device
        points, labels, boxes = prompt_tensors(
            point_coords, point_labels, box, self.original_size, self.model.config.image_size, dev)
        masks = None
        if mask_input is not None:
            masks = torch.as_tensor(mask_input, dtype=torch.float32, device=dev)[None]
        out, iou, low_res = self.predict_torch(
            points, labels, boxes, masks, multimask_output, return_logits)
        return out[0].cpu().numpy(), iou[0].cpu().numpy(), low_res[0].cpu().numpy()

    @torch.no_grad()
    def predict_torch(
        self,
        point_coords: Optional[torch.Tensor],
        point_labels: Optional[torch.Tensor],
        boxes: Optional[torch.Tensor] = None,
        mask_input: Optional[torch.Tensor] = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """predict on tensors, the prompts already in frame pixels (prompt_tensors): points
        (B, N, 2), labels (B, N), boxes (B, 4), mask_input (B, 1, 4G, 4G). Returns masks
        (B, M, H, W) bool (float32 logits with return_logits), scores (B, M) and the low-res
        logits (B, M, 4G, 4G), float32."""
        if self.features is None:
            raise RuntimeError("call set_image before predict")
        S = self.model.config.image_size
        low_res, iou = self.model.decode(
            self.features, point_coords, point_labels, boxes, mask_input, multimask_output)
        low_res, iou = low_res.float(), iou.float()  # bf16 under autocast; numpy has no bf16
        masks = postprocess_masks(low_res, S, self.input_size, self.original_size)
        if not return_logits:
            masks = masks > self.model.mask_threshold
        return masks, iou, low_res

    def get_image_embedding(self) -> torch.Tensor:
        """(1, C, G, G) embedding of the current image."""
        if self.features is None:
            raise RuntimeError("call set_image before get_image_embedding")
        return self.features
