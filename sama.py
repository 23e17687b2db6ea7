"""SAMA: Segment And Matte Anything in a Unified Model, the paper's method in plain PyTorch.

Read beside the paper ("Segment and Matte Anything in a Unified Model", Fan, Li, Biswas, Nag,
Achan), in its order: the Multi-View Localization Encoder (MVLE, Eqs. 2-3), the Localization
Adapter (Local-Adapter, Eqs. 4-9), the SAMA tokens and the prediction heads, then the SAMA model
and its predictor. SAM itself (the paper's "Preliminary") is in sam.py and stays frozen.
Where the paper is silent, DESIGN.md says what was chosen and why.

Shape notation as in sam.py (B, S, G, D, C, N, nh, hs, T), plus
    n  Local-Adapter windows per side (8), each holding (G/n)^2 decoder and (2G/n)^2 local tokens
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from sam import (
    MLP,
    DecoderAttention,
    LayerNorm2d,
    PositionEmbeddingRandom,
    Sam,
    image_to_frame,
    postprocess_masks,
    preprocess_shape,
    prompt_tensors,
)

TASKS = ("seg", "matting")  # index of each task's SAMA token and prediction head
MVLE_POOL_SIZES = (16, 8, 4)  # sides of the pooled F^I: receptive fields 4, 8, 16 on a 64 x 64 grid
ADAPTER_WINDOWS = 8  # local attention: the G x G decoder grid in 8 x 8 windows, nested in the quadrants


def split_quadrants(x: torch.Tensor) -> torch.Tensor:
    """(..., H, W) -> (..., 4, H/2, W/2); quadrant m = 0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right."""
    H, W = x.shape[-2:]
    x = x.unflatten(-1, (2, W // 2)).unflatten(-3, (2, H // 2))  # (..., 2, H/2, 2, W/2)
    return x.transpose(-3, -2).flatten(-4, -3)  # (..., 4, H/2, W/2)


def stitch_quadrants(x: torch.Tensor) -> torch.Tensor:
    """Inverse of split_quadrants: (..., 4, h, w) -> (..., 2h, 2w)."""
    x = x.unflatten(-3, (2, 2)).transpose(-3, -2)  # (..., 2, h, 2, w)
    return x.flatten(-4, -3).flatten(-2, -1)


def to_windows(x: torch.Tensor, n: int) -> torch.Tensor:
    """(B, H, W, C) tokens on their grid -> (B * n * n, H/n * W/n, C): the tokens of each of n x n windows."""
    B, H, W, C = x.shape
    x = x.reshape(B, n, H // n, n, W // n, C).transpose(2, 3)  # (B, n, n, H/n, W/n, C)
    return x.reshape(B * n * n, (H // n) * (W // n), C)


def from_windows(x: torch.Tensor, n: int, H: int, W: int) -> torch.Tensor:
    """Inverse of to_windows: (B * n * n, H/n * W/n, C) -> (B, H, W, C)."""
    C = x.shape[-1]
    x = x.view(-1, n, n, H // n, W // n, C).transpose(2, 3)  # (B, n, H/n, n, W/n, C)
    return x.reshape(-1, H, W, C)


class MVLE(nn.Module):
    """Multi-View Localization Encoder (Eqs. 2-3).

    The features of local view m, F^{L_m}, query the multi-scale pooled global features of the same
    region, F_pool^{I_m}, with projections of their own for each m.
    """

    def __init__(self, C: int, num_heads: int) -> None:
        super().__init__()
        self.cross_attn = nn.ModuleList(DecoderAttention(C, num_heads, downsample_rate=2) for _ in range(4))
        self.norm = nn.LayerNorm(C)

    def forward(self, F_I: torch.Tensor, F_L: torch.Tensor, pe_layer: PositionEmbeddingRandom) -> torch.Tensor:
        """
        Args:
            F_I: (B, C, G, G) features of the global view.
            F_L: (B, 4, C, G, G) features of the four local views.
            pe_layer: SAM's (frozen) Fourier encoding, evaluated at each token's place in the global frame.
        Returns:
            F'^P: (B, C, 2G, 2G), the four refined local maps stitched in place.
        """
        B, _, C, G, _ = F_L.shape
        # F_pool^I: average pooling with several receptive fields, each pooled map cut into the regions I_m
        pooled, pooled_pe = [], []
        for s in MVLE_POOL_SIZES:
            p = split_quadrants(F.adaptive_avg_pool2d(F_I, s))  # (B, C, 4, s/2, s/2)
            pooled.append(p.flatten(3).permute(0, 2, 3, 1))  # (B, 4, s*s/4, C)
            pe = split_quadrants(pe_layer((s, s)))  # (C, 4, s/2, s/2)
            pooled_pe.append(pe.flatten(2).permute(1, 2, 0))  # (4, s*s/4, C)
        F_pool, F_pool_pe = torch.cat(pooled, dim=2), torch.cat(pooled_pe, dim=1)  # (B, 4, P, C), (4, P, C)
        local_pe = split_quadrants(pe_layer((2 * G, 2 * G))).flatten(2).permute(1, 2, 0)  # (4, G*G, C)
        F_P = []
        for m, cross_attn in enumerate(self.cross_attn):
            F_Lm = F_L[:, m].flatten(2).transpose(1, 2)  # (B, G*G, C)
            # Eq. (2): Q_m = F^{L_m} W^{Q_m}, K_m = F_pool^{I_m} W^{K_m}, V_m = F_pool^{I_m} W^{V_m}
            # Eq. (3): F'^{P_m} = Cross-Attn(Q_m, K_m, V_m)   (residual and LayerNorm as in SAM's decoder)
            attn = cross_attn(F_Lm + local_pe[m], F_pool[:, m] + F_pool_pe[m], F_pool[:, m])
            F_P.append(self.norm(F_Lm + attn))
        F_P = torch.stack(F_P, dim=1).permute(0, 3, 1, 2).unflatten(3, (G, G))  # (B, C, 4, G, G)
        return stitch_quadrants(F_P)  # (B, C, 2G, 2G)


class LocalAdapter(nn.Module):
    """Localization Adapter (Eqs. 4-9), run after one of SAM's decoder layers.

    Local attention: the decoder's image tokens in one window of quadrant m attend to the local tokens
    of the same window (2x finer), then the local tokens attend back; a confidence map gates what is
    added to the decoder's tokens.
    """

    def __init__(self, C: int, num_heads: int) -> None:
        super().__init__()
        self.global_to_local = DecoderAttention(C, num_heads, downsample_rate=2)  # W^A, W^{K_A}, W^{V_A}
        self.local_to_global = DecoderAttention(C, num_heads, downsample_rate=2)  # the roles swapped
        self.norm = nn.LayerNorm(C)
        self.confidence = nn.Conv2d(C, 1, kernel_size=1)

    def project_pe(self, pe_local: torch.Tensor) -> torch.Tensor:
        """The positional encoding's share of project_local, biases included: (B*n*n, (2G/n)^2, 3C/2).

        [pe W^{K_A} + b^{K_A}, b^{V_A}, pe W^Q + b^Q]: V has no positional encoding.
        """
        k = self.global_to_local.k_proj(pe_local)
        return torch.cat([k, self.global_to_local.v_proj.bias.expand_as(k), self.local_to_global.q_proj(pe_local)], -1)

    def project_local(self, local: torch.Tensor, pe_share: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The local tokens' projections: K_A and V_A of the first attention, Q of the second.

        (local + pe) W = local W + pe W: the three weights make one matmul of `local`, and the PE's
        share, `pe_share` from project_pe, is computed once per image. local (B*n*n, (2G/n)^2, C) by
        window. For the first adapter the result does not depend on the prompt: SAMA.encode keeps it.
        """
        W = torch.cat([self.global_to_local.k_proj.weight, self.global_to_local.v_proj.weight,
                       self.local_to_global.q_proj.weight])  # (3C/2, C)
        # Eqs. (5)-(6): K_{A_m} = (F'^{P_m} + F_early) W^{K_A}, V_{A_m} = (F'^{P_m} + F_early) W^{V_A}
        # (the positional encoding added to the keys, as SAM's decoder does), and Q = local W^Q
        out = torch.addmm(pe_share.flatten(0, 1), local.flatten(0, 1), W.T)  # (B*n*n*t, 3C/2)
        return out.view_as(pe_share).chunk(3, dim=-1)

    def forward(
        self, F_out: torch.Tensor, local: torch.Tensor, pe_global: torch.Tensor, projections: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            F_out: (B, G, G, C) the image tokens output by the decoder layer, on their grid.
            local: (B*n*n, (2G/n)^2, C) local tokens by window (F'^P + F_early for the first adapter).
            pe_global: (B*n*n, (G/n)^2, C) positional encoding of F_out, by window.
            projections: project_local(local, pe_share).
        Returns:
            F'_out (B, G, G, C), input of the next decoder layer; the updated local tokens, by window.
        """
        B, G, _, C = F_out.shape
        n = ADAPTER_WINDOWS
        K_A, V_A, Q_local = projections
        F_win = to_windows(F_out, n)  # (B*n*n, (G/n)^2, C)
        F_win_pe = F_win + pe_global
        # Eq. (4): Q_A = F_out W^A   (K_{A_m}, V_{A_m} of Eqs. (5)-(6) come from project_local)
        Q_A = self.global_to_local.q_proj(F_win_pe)
        # Eq. (7): F''^{P_m} = Cross-Attn(Q_A, K_{A_m}, V_{A_m}), window by window inside quadrant m
        F_2P = from_windows(self.global_to_local.attend(Q_A, K_A, V_A), n, G, G)  # (B, G, G, C)
        # second cross-attention, roles swapped: the local tokens query the decoder's image tokens
        attn = self.local_to_global.attend(Q_local, self.local_to_global.k_proj(F_win_pe), self.local_to_global.v_proj(F_win))
        local = self.norm(local + attn)
        # Eq. (8): C = sigmoid(Conv(F_out)) * F''^P   (the 1x1 conv applied to the channels-last tokens)
        C = torch.sigmoid(F.linear(F_out, self.confidence.weight.flatten(1), self.confidence.bias)) * F_2P
        # Eq. (9): F'_out = F_out + C
        return F_out + C, local


class PredictionHead(nn.Module):
    """A task's prediction head (Sec. "Prediction Heads"): interpolation up-sampling with conv + BatchNorm
    + GELU layers on the Local-Adapter's output, matched with the SAMA token's MLP (as HQ-SAM's token)."""

    def __init__(self, C: int) -> None:
        super().__init__()

        def conv_bn_gelu(c_in: int, c_out: int, k: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=False), nn.BatchNorm2d(c_out), nn.GELU())

        self.fuse = conv_bn_gelu(C, C // 8, 1)  # at 2G
        self.refine = conv_bn_gelu(C // 8, C // 8, 3)  # at 4G, beside SAM's own up-scaled features
        self.out = conv_bn_gelu(C // 8, C // 16, 1)  # at 8G: pointwise, the costliest resolution
        self.token_mlp = MLP(C, C, C // 16, 3)

    def forward(self, token: torch.Tensor, F_out: torch.Tensor, local: torch.Tensor, sam_up: torch.Tensor) -> torch.Tensor:
        """token (B, C), F'_out (B, G, G, C) on its grid, the local tokens F'^P by adapter window
        (B*n*n, (2G/n)^2, C), SAM's up-scaled map (B, C/8, 4G, 4G) -> logits (B, 1, 8G, 8G)."""
        G = F_out.shape[1]
        # fuse(up(F'_out) + F'^P): a bias-free 1x1 conv commutes with bilinear up-sampling and with the
        # window layout, so it runs on F'_out at G and on the windowed tokens, and only C/8 channels move
        W_fuse = self.fuse[0].weight.flatten(1)  # (C/8, C)
        F_P = from_windows(F.linear(local, W_fuse), ADAPTER_WINDOWS, 2 * G, 2 * G)  # (B, 2G, 2G, C/8)
        F_out = F.linear(F_out, W_fuse).permute(0, 3, 1, 2)  # (B, C/8, G, G)
        x = F.interpolate(F_out, scale_factor=2, mode="bilinear", align_corners=False) + F_P.permute(0, 3, 1, 2)
        x = self.fuse[1:](x)  # BatchNorm, GELU at 2G
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)  # (B, C/8, 4G, 4G)
        x = self.refine(x + sam_up)
        # likewise the last 1x1 conv runs before the last up-sampling, on 4x fewer pixels
        x = self.out[0](x)  # (B, C/16, 4G, 4G)
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)  # (B, C/16, 8G, 8G)
        x = self.out[1:](x)  # BatchNorm, GELU at 8G
        B, c, h, w = x.shape
        return (self.token_mlp(token)[:, None, :] @ x.view(B, c, h * w)).view(B, 1, h, w)  # (B, 1, 8G, 8G)


@dataclass
class ImageFeatures:
    """What SAMA computes before the prompt is known; SamaPredictor keeps it for every prompt."""

    F_I: torch.Tensor  # (B, C, G, G) SAM's embedding of the global view
    local: torch.Tensor  # (B*n*n, (2G/n)^2, C) the local tokens F'^P + F_early, by adapter window
    pe_global: torch.Tensor  # (1, G*G, C) positional encoding of the decoder's image tokens
    pe_global_windows: torch.Tensor  # (B*n*n, (G/n)^2, C) the same, by adapter window
    pe_shares: list[torch.Tensor]  # each Local-Adapter's project_pe of the local grid's positional encoding
    first_layer_projections: tuple[torch.Tensor, ...]  # Sam.first_layer_projections(F_I): no mask input
    first_adapter_projections: Optional[tuple[torch.Tensor, ...]]  # the first Local-Adapter's of `local`


class SAMA(nn.Module):
    """SAM, frozen, plus MVLE, two Local-Adapters, two SAMA tokens and two prediction heads.

    A switch turned off removes its module (the ablations of Tables 3-4 are real configurations):
    without MVLE no local view is encoded; without Local-Adapters the decoder runs as SAM's.
    """

    def __init__(self, sam: Sam, use_mvle: bool = True, use_local_adapter: bool = True) -> None:
        super().__init__()
        self.sam = sam.requires_grad_(False)
        self.use_mvle, self.use_local_adapter = use_mvle, use_local_adapter
        cfg = sam.config
        if cfg.grid_size % (2 * ADAPTER_WINDOWS):
            raise ValueError(f"SAMA needs a token grid divisible by {2 * ADAPTER_WINDOWS}; {cfg.name} has {cfg.grid_size}")
        C, D, heads = cfg.prompt_embed_dim, cfg.encoder_embed_dim, cfg.decoder_num_heads
        self.mvle = MVLE(C, heads) if use_mvle else None
        # F_early (the first global-attention block, D channels) brought to the decoder width
        self.early_proj = nn.Sequential(nn.Conv2d(D, C, kernel_size=1), LayerNorm2d(C))
        num_layers = len(sam.mask_decoder.transformer.layers)
        self.local_adapters = nn.ModuleList(LocalAdapter(C, heads) for _ in range(num_layers)) if use_local_adapter else None
        self.sama_tokens = nn.Embedding(len(TASKS), C)
        self.heads = nn.ModuleList(PredictionHead(C) for _ in TASKS)

    @property
    def config(self) -> dict:
        return {"variant": self.sam.config.name, "use_mvle": self.use_mvle, "use_local_adapter": self.use_local_adapter}

    def encode(self, images: torch.Tensor, images_local: Optional[torch.Tensor]) -> ImageFeatures:
        """Everything that does not depend on the prompt.

        Args:
            images: (B, 3, S, S) global frames.  images_local: (B, 3, 2S, 2S), the same view at twice
                the resolution: its quadrants are the local views (unused without MVLE).
        """
        with torch.no_grad():  # SAM is frozen: keep no activation of the encoder for backward
            views = images[:, None]  # (B, 1, 3, S, S)
            if self.mvle is not None:
                local_views = split_quadrants(images_local).transpose(1, 2)  # (B, 4, 3, S, S)
                views = torch.cat([views, local_views], dim=1)  # (B, 5, 3, S, S)
            # one image's views form one encoder batch: the memory of global attention stays bounded
            encoded = [self.sam.image_encoder(v) for v in views]
            embeddings = torch.stack([e for e, _ in encoded])  # (B, V, C, G, G)
            early = torch.stack([f[0] for _, f in encoded])  # (B, G, G, D): the global view's
            pe_layer = self.sam.prompt_encoder.pe_layer
            B, G = images.shape[0], embeddings.shape[-1]
            n = ADAPTER_WINDOWS
            pe_global = self.sam.prompt_encoder.get_dense_pe().permute(0, 2, 3, 1).contiguous()  # (1, G, G, C)
            pe_global_windows = to_windows(pe_global, n).repeat(B, 1, 1)  # (B*n*n, (G/n)^2, C)
            pe_local = to_windows(pe_layer((2 * G, 2 * G)).permute(1, 2, 0)[None], n).repeat(B, 1, 1)
            F_I = embeddings[:, 0]
            first_layer = self.sam.first_layer_projections(F_I)
        F_early = self.early_proj(early.permute(0, 3, 1, 2))  # (B, C, G, G)
        F_early = F.interpolate(F_early, scale_factor=2, mode="bilinear", align_corners=False)  # (B, C, 2G, 2G)
        if self.mvle is None:
            F_P = F_early
        else:
            # the residual fusion inside Eqs. (5)-(6): F'^P + F_early
            F_P = self.mvle(F_I, embeddings[:, 1:], pe_layer) + F_early
        local = to_windows(F_P.permute(0, 2, 3, 1), n)  # (B*n*n, (2G/n)^2, C): the adapters' layout
        first, pe_shares = None, []
        if self.local_adapters is not None:  # outside no_grad: the adapters' weights learn through both
            pe_shares = [adapter.project_pe(pe_local) for adapter in self.local_adapters]
            first = self.local_adapters[0].project_local(local, pe_shares[0])
        return ImageFeatures(F_I, local, pe_global.flatten(1, 2), pe_global_windows, pe_shares, first_layer, first)

    def decode(
        self,
        features: ImageFeatures,
        task: str,
        points: Optional[torch.Tensor] = None,
        point_labels: Optional[torch.Tensor] = None,
        boxes: Optional[torch.Tensor] = None,
        mask_inputs: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """SAM's decoder with this task's SAMA token and the Local-Adapters -> logits (B, 1, 8G, 8G).

        Each task runs its own pass with only its own token ("two SAMA tokens are used separately"),
        so the segmentation output does not depend on the matting token or head, and vice versa.
        """
        sam, dec = self.sam, self.sam.mask_decoder
        t = TASKS.index(task)
        sparse, dense = sam.prompt_encoder((points, point_labels) if points is not None else None, boxes, mask_inputs)
        B, C, G, _ = features.F_I.shape
        if sparse.shape[0] not in (1, B):
            raise ValueError(f"{sparse.shape[0]} prompts for {B} images: give one prompt per image")
        # tokens: SAM's IoU and mask tokens (frozen), this task's SAMA token, the prompt tokens
        sam_tokens = torch.cat([dec.iou_token.weight, dec.mask_tokens.weight])  # (5, C)
        sama_token = self.sama_tokens.weight[t : t + 1]  # (1, C)
        tokens = torch.cat([torch.cat([sam_tokens, sama_token]).expand(B, -1, -1), sparse.expand(B, -1, -1)], dim=1)
        key_pe = features.pe_global  # (1, G*G, C)
        keys = (features.F_I + dense).flatten(2).transpose(1, 2).contiguous()  # (B, G*G, C)
        local, projections = features.local, features.first_adapter_projections
        first_layer = features.first_layer_projections if mask_inputs is None else None
        queries = tokens  # (B, T, C)
        for i, layer in enumerate(dec.transformer.layers):
            queries, keys = layer(queries, keys, tokens, key_pe, first_layer if i == 0 else None)
            if self.local_adapters is not None:
                adapter = self.local_adapters[i]
                if i > 0:  # the previous adapter changed the local tokens
                    projections = adapter.project_local(local, features.pe_shares[i])
                F_out, local = adapter(keys.view(B, G, G, C), local, features.pe_global_windows, projections)
                keys = F_out.flatten(1, 2)  # (B, G*G, C)
        queries = dec.transformer.final_attention(queries, keys, tokens, key_pe)
        F_out = keys.view(B, G, G, C)  # F'_out
        return self.heads[t](queries[:, 1 + dec.num_mask_tokens], F_out, local, dec.upscale(keys, G))

    def forward(
        self,
        images: torch.Tensor,
        images_local: Optional[torch.Tensor],
        points: Optional[torch.Tensor] = None,
        point_labels: Optional[torch.Tensor] = None,
        boxes: Optional[torch.Tensor] = None,
        mask_inputs: Optional[torch.Tensor] = None,
        tasks: tuple[str, ...] = TASKS,
    ) -> dict[str, torch.Tensor]:
        """Batched, differentiable.

        Args:
            images (B, 3, S, S), images_local (B, 3, 2S, 2S): frames (see `image_to_frame`).
            points (B, N, 2) and point_labels (B, N), boxes (B, 4): frame pixels; mask_inputs (B, 1, 4G, 4G).
            tasks: which heads to run.
        Returns:
            "seg_logits" (B, 1, 8G, 8G) and / or "alpha" (B, 1, 8G, 8G) in [0, 1], and "sam_logits"
            (B, 1, 4G, 4G): plain SAM's single-mask output for the same prompt (the baseline).
        """
        features = self.encode(images, images_local)
        prompts = (points, point_labels, boxes, mask_inputs)
        out = {}
        with torch.no_grad():
            out["sam_logits"] = self.sam.decode(features.F_I, *prompts)[0]
        if "seg" in tasks:
            out["seg_logits"] = self.decode(features, "seg", *prompts)
        if "matting" in tasks:
            out["alpha"] = torch.sigmoid(self.decode(features, "matting", *prompts))
        return out


class SamaPredictor:
    """Encode an image once (five views and MVLE), then prompt it as often as you like.

    On CUDA a prompt replays a CUDA graph, captured at the first prompt of each shape (number of
    points, box or not, autocast): one prompt is three decoder passes of a few hundred small kernels,
    whose launches from Python, not the GPU's work, would otherwise set its time. The graphs read the
    model's weights and the cached image features where they lie, so the model must not be replaced
    while the predictor is in use (loading weights in place is fine).
    """

    def __init__(self, sama: SAMA) -> None:
        self.model = sama.eval()
        self.features: Optional[ImageFeatures] = None
        self.graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, list, tuple]] = {}  # prompt shape -> graph, its inputs, outputs
        self.graph_pool = None  # the graphs share one memory pool: each replay's outputs are read before the next

    # inference_mode (not no_grad) throughout: the cached tensors are updated in place, which
    # inference tensors allow only inside it
    @torch.inference_mode()
    def set_image(self, image: np.ndarray) -> None:
        """image: (H, W, 3) uint8 RGB."""
        S, dev = self.model.sam.config.image_size, self.model.sam.device
        frame = image_to_frame(image, S, dev)[None]
        local = image_to_frame(image, 2 * S, dev)[None] if self.model.use_mvle else None
        features = self.model.encode(frame, local)
        cached, new = _tensors(self.features), _tensors(features)
        if self.graphs and [(t.shape, t.dtype) for t in cached] == [(t.shape, t.dtype) for t in new]:
            for c, n in zip(cached, new):  # the graphs read the features there
                c.copy_(n)
        else:
            self.graphs.clear()
            self.features = features
        self.original_size = image.shape[:2]
        self.input_size = preprocess_shape(image.shape[0], image.shape[1], S)

    @torch.inference_mode()
    def predict(
        self,
        point_coords: Optional[np.ndarray] = None,
        point_labels: Optional[np.ndarray] = None,
        box: Optional[np.ndarray] = None,
        return_logits: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Returns the mask (H, W) bool, the alpha (H, W) float32 in [0, 1] and SAM's own mask (H, W) bool.

        With return_logits, both masks come as float32 logits instead (benchmarks score probabilities).
        """
        if self.features is None:
            raise RuntimeError("call set_image before predict")
        if point_coords is None and box is None:
            raise ValueError("give a box or at least one point")
        S, dev = self.model.sam.config.image_size, self.model.sam.device
        prompts = prompt_tensors(point_coords, point_labels, box, self.original_size, S, dev)
        decode = self._decode_graphed if dev.type == "cuda" else self._decode
        sam_logits, seg_logits, alpha = decode(prompts)
        # both SAMA maps (8G) in one resize; SAM's (4G) as SamPredictor resizes it
        seg, alpha = postprocess_masks(torch.cat([seg_logits, alpha], 1).float(), S, self.input_size, self.original_size)[0]
        sam_mask = postprocess_masks(sam_logits.float(), S, self.input_size, self.original_size)[0, 0]
        if not return_logits:
            seg, sam_mask = seg > 0, sam_mask > 0
        return seg.cpu().numpy(), alpha.cpu().numpy(), sam_mask.cpu().numpy()

    def _decode(self, prompts: tuple) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """SAM's logits (1, 1, 4G, 4G), SAMA's segmentation logits and alpha (1, 1, 8G, 8G) for one prompt."""
        sam_logits = self.model.sam.decode(self.features.F_I, *prompts,
                                           first_layer_projections=self.features.first_layer_projections)[0]
        seg_logits = self.model.decode(self.features, "seg", *prompts)
        alpha = torch.sigmoid(self.model.decode(self.features, "matting", *prompts))
        return sam_logits, seg_logits, alpha

    def _decode_graphed(self, prompts: tuple) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """_decode replayed from a CUDA graph; the outputs are overwritten by the next replay."""
        amp = torch.is_autocast_enabled("cuda"), torch.get_autocast_dtype("cuda")
        key = (tuple(None if p is None else tuple(p.shape) for p in prompts), amp)
        if key not in self.graphs:
            inputs = [None if p is None else p.clone() for p in prompts]
            # autocast's cache of cast weights would be freed after the capture: cast inside the graph
            no_cache = torch.autocast("cuda", dtype=amp[1], enabled=amp[0], cache_enabled=False)
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side), no_cache:
                self._decode(inputs)  # warm-up outside the capture (library handles, lazy initialisation)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self.graph_pool), no_cache:
                outputs = self._decode(inputs)
            self.graph_pool = graph.pool()
            self.graphs[key] = graph, inputs, outputs
        graph, inputs, outputs = self.graphs[key]
        for static, p in zip(inputs, prompts):
            if p is not None:
                static.copy_(p)
        graph.replay()
        return outputs


def _tensors(features: Optional[ImageFeatures]) -> list[torch.Tensor]:
    """Every tensor of an ImageFeatures, in a fixed order."""
    if features is None:
        return []
    first = list(features.first_adapter_projections or ())
    return [features.F_I, features.local, features.pe_global, features.pe_global_windows, *features.pe_shares,
            *features.first_layer_projections, *first]
