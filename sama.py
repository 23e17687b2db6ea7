"""SAMA: Segment And Matte Anything in a Unified Model, the paper's method in plain PyTorch.

Read beside the paper ("Segment and Matte Anything in a Unified Model", Fan, Li, Biswas, Nag,
Achan), in its order: the Multi-View Localization Encoder (MVLE, Eqs. 2-3), the Localization
Adapter (Local-Adapter, Eqs. 4-9), the SAMA tokens and the prediction heads, then the SAMA model
and its predictor. SAM itself (the paper's "Preliminary") is in sam.py and stays frozen.
Where the paper is silent, DESIGN.md says what was chosen and why.

Shape notation as in sam.py (B, S, G, D, C, N, nh, hs, T), plus
    n  Local-Adapter windows per side (8), each holding (G/n)^2 decoder and (2G/n)^2 local tokens
    t  tokens in one window
"""

from __future__ import annotations

from dataclasses import dataclass, fields
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
)

TASKS = ("seg", "matting")  # index of each task's SAMA token and prediction head
# the command lines' --tasks -> the heads that learn (train.py) or are scored (evaluate.py), listed
# as a checkpoint records them
TASK_CHOICES = {"seg": ["seg"], "matting": ["matting"], "both": list(TASKS)}
RECEPTIVE_FIELDS = (4, 8, 16)  # MVLE's average pooling, in tokens (the paper's "e.g., 4, 8, 16")
ADAPTER_WINDOWS = 8  # local attention: the G x G decoder grid in 8 x 8 windows, nested in quadrants


def split_quadrants(x: torch.Tensor) -> torch.Tensor:
    """(..., H, W) -> (..., 4, H/2, W/2); quadrant m = 0 top-left, 1 top-right, 2 bottom-left,
    3 bottom-right."""
    H, W = x.shape[-2:]
    x = x.unflatten(-1, (2, W // 2)).unflatten(-3, (2, H // 2))  # (..., 2, H/2, 2, W/2)
    return x.transpose(-3, -2).flatten(-4, -3)  # (..., 4, H/2, W/2)


def stitch_quadrants(x: torch.Tensor) -> torch.Tensor:
    """Inverse of split_quadrants: (..., 4, h, w) -> (..., 2h, 2w)."""
    x = x.unflatten(-3, (2, 2)).transpose(-3, -2)  # (..., 2, h, 2, w)
    return x.flatten(-4, -3).flatten(-2, -1)


def to_windows(x: torch.Tensor, n: int) -> torch.Tensor:
    """(B, H, W, C) tokens on their grid -> (B*n*n, H/n * W/n, C): the tokens of each window."""
    B, H, W, C = x.shape
    x = x.reshape(B, n, H // n, n, W // n, C).transpose(2, 3)  # (B, n, n, H/n, W/n, C)
    return x.reshape(B * n * n, (H // n) * (W // n), C)


def from_windows(x: torch.Tensor, n: int, H: int, W: int) -> torch.Tensor:
    """Inverse of to_windows: (B*n*n, H/n * W/n, C) -> (B, H, W, C)."""
    C = x.shape[-1]
    x = x.reshape(-1, n, n, H // n, W // n, C).transpose(2, 3)  # (B, n, H/n, n, W/n, C)
    return x.reshape(-1, H, W, C)


# ----------------------------------------------------------------------------------------------
# Multi-View Localization Encoder (MVLE), Eqs. (2)-(3)
# ----------------------------------------------------------------------------------------------


class MVLE(nn.Module):
    """Multi-View Localization Encoder (Eqs. 2-3).

    The features of local view m, F^{L_m}, query the multi-scale pooled global features of the same
    region, F_pool^{I_m}, with projections of their own for each m.
    """

    def __init__(self, C: int, num_heads: int, G: int) -> None:
        super().__init__()
        # W^{Q_m}, W^{K_m}, W^{V_m} for m = 1..4
        self.cross_attn = nn.ModuleList(DecoderAttention(C, num_heads, downsample_rate=2)
                                        for _ in range(4))
        self.norm = nn.LayerNorm(C)
        # a pooled map must hold a whole number of tokens in each quadrant: on a small grid the
        # receptive fields larger than a quadrant are left out (DESIGN.md, "MVLE pooling")
        self.receptive_fields = tuple(r for r in RECEPTIVE_FIELDS if G % (2 * r) == 0)
        if not self.receptive_fields:
            smallest = 2 * RECEPTIVE_FIELDS[0]
            raise ValueError(f"MVLE needs a token grid divisible by {smallest}, got {G}")

    def forward(
        self, F_I: torch.Tensor, F_L: torch.Tensor, pe_layer: PositionEmbeddingRandom
    ) -> torch.Tensor:
        """
        Args:
            F_I: (B, C, G, G) features of the global view.
            F_L: (B, 4, C, G, G) features of the four local views.
            pe_layer: SAM's (frozen) Fourier encoding, evaluated at each token's place in the
                global frame.
        Returns:
            F'^P: (B, C, 2G, 2G), the four refined local maps stitched in place.
        """
        B, _, C, G, _ = F_L.shape
        # F_pool^I: average pooling with each receptive field r, cut into the four regions I_m
        pooled, pooled_pe = [], []
        for r in self.receptive_fields:
            p = split_quadrants(F.avg_pool2d(F_I, r))  # (B, C, 4, G/2r, G/2r)
            pooled.append(p.flatten(3).permute(0, 2, 3, 1))  # (B, 4, (G/2r)^2, C)
            pe = split_quadrants(pe_layer((G // r, G // r)))  # (C, 4, G/2r, G/2r)
            pooled_pe.append(pe.flatten(2).permute(1, 2, 0))  # (4, (G/2r)^2, C)
        F_pool = torch.cat(pooled, dim=2)  # (B, 4, N, C)
        F_pool_pe = torch.cat(pooled_pe, dim=1)  # (4, N, C)
        # the local view m covers quadrant m of the global frame, at twice its resolution
        pe_local = split_quadrants(pe_layer((2 * G, 2 * G)))  # (C, 4, G, G)
        pe_local = pe_local.flatten(2).permute(1, 2, 0)  # (4, G*G, C)
        F_P = []
        for m, cross_attn in enumerate(self.cross_attn):
            F_Lm = F_L[:, m].flatten(2).transpose(1, 2)  # (B, G*G, C)
            # Eq. (2): Q_m = F^{L_m} W^{Q_m}, K_m = F_pool^{I_m} W^{K_m}, V_m = F_pool^{I_m} W^{V_m}
            #          (positions added to the queries and keys, as in SAM's decoder)
            # Eq. (3): F'^{P_m} = Cross-Attn(Q_m, K_m, V_m)
            attn = cross_attn(F_Lm + pe_local[m], F_pool[:, m] + F_pool_pe[m], F_pool[:, m])
            F_P.append(self.norm(F_Lm + attn))  # residual and LayerNorm, as in SAM's decoder
        F_P = torch.stack(F_P, dim=1).permute(0, 3, 1, 2).unflatten(3, (G, G))  # (B, C, 4, G, G)
        return stitch_quadrants(F_P)  # (B, C, 2G, 2G)


# ----------------------------------------------------------------------------------------------
# Localization Adapter (Local-Adapter), Eqs. (4)-(9)
# ----------------------------------------------------------------------------------------------


class LocalAdapter(nn.Module):
    """Localization Adapter (Eqs. 4-9), run after one of SAM's decoder layers.

    Local attention: the decoder's image tokens in one window of quadrant m attend to the local
    tokens of the same window (at twice the resolution), then the local tokens attend back; a
    confidence map gates what is added to the decoder's tokens.
    """

    def __init__(self, C: int, num_heads: int) -> None:
        super().__init__()
        # W^A, W^{K_A}, W^{V_A} of the first cross-attention; the second swaps the roles
        self.global_to_local = DecoderAttention(C, num_heads, downsample_rate=2)
        self.local_to_global = DecoderAttention(C, num_heads, downsample_rate=2)
        self.norm = nn.LayerNorm(C)
        self.confidence = nn.Linear(C, 1)  # Eq. (8)'s 1x1 convolution, on each token's channels

    def project_local(
        self, F_local: torch.Tensor, pe_local: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The projections of the local tokens F_local (B*n*n, (2G/n)^2, C), by window: Eq. (5)'s
        K_A, Eq. (6)'s V_A and the second cross-attention's queries Q_L, each
        (B*n*n, (2G/n)^2, C/2). No prompt changes the first adapter's: SAMA.encode computes them
        once per image (ImageFeatures.projected)."""
        F_pe = F_local + pe_local  # positions added to the keys and queries, as in SAM's decoder
        # Eq. (5): K_{A_m} = (F'^{P_m} + F_early) W^{K_A}
        K_A = self.global_to_local.k_proj(F_pe)
        # Eq. (6): V_{A_m} = (F'^{P_m} + F_early) W^{V_A}
        V_A = self.global_to_local.v_proj(F_local)
        return K_A, V_A, self.local_to_global.q_proj(F_pe)

    def forward(
        self,
        F_out: torch.Tensor,
        F_local: torch.Tensor,
        pe_out: torch.Tensor,
        pe_local: torch.Tensor,
        projected: Optional[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            F_out: (B, G*G, C) the image tokens output by the decoder layer.
            F_local: (B*n*n, (2G/n)^2, C) the local tokens by window: F'^P + F_early for the first
                adapter, the first adapter's output for the second.
            pe_out, pe_local: the positional encodings of F_out and F_local, by window.
            projected: project_local(F_local, pe_local), when already computed (the cache).
        Returns:
            F'_out (B, G*G, C), the input of the next decoder layer; the updated local tokens.
        """
        B, N, C = F_out.shape
        G, n = round(N**0.5), ADAPTER_WINDOWS
        g2l, l2g = self.global_to_local, self.local_to_global
        F_out = to_windows(F_out.view(B, G, G, C), n)  # (B*n*n, (G/n)^2, C)
        K_A, V_A, Q_L = self.project_local(F_local, pe_local) if projected is None else projected
        # Eq. (4): Q_A = F_out W^A   (positions added to queries and keys, as in SAM's decoder)
        F_out_pe = F_out + pe_out
        Q_A = g2l.q_proj(F_out_pe)
        # Eq. (7): F''^{P_m} = Cross-Attn(Q_A, K_{A_m}, V_{A_m}), window by window in quadrant m
        F_2P = g2l.attend(Q_A, K_A, V_A)  # (B*n*n, (G/n)^2, C)
        # second cross-attention, roles swapped: the local tokens query the decoder's tokens
        attn = l2g.attend(Q_L, l2g.k_proj(F_out_pe), l2g.v_proj(F_out))  # (B*n*n, (2G/n)^2, C)
        F_local = self.norm(F_local + attn)
        # Eq. (8): C = sigma(Conv(F_out)) * F''^{P_m}   (the paper's C: the gated local features)
        gated = torch.sigmoid(self.confidence(F_out)) * F_2P
        # Eq. (9): F'_out = F_out + C
        F_out = F_out + gated
        return from_windows(F_out, n, G, G).view(B, N, C), F_local


# ----------------------------------------------------------------------------------------------
# Prediction heads (matched with the SAMA tokens)
# ----------------------------------------------------------------------------------------------


class PredictionHead(nn.Module):
    """A task's prediction head (Sec. "Prediction Heads"): interpolation up-sampling with conv +
    BatchNorm + GELU layers on the Local-Adapter's output, matched with the SAMA token's MLP as
    HQ-SAM matches its token. At 4G and 8G F_early joins, brought there by learned up-sampling
    (SAMA.early_up, HQ-SAM's early-feature path); 3x3 convolutions at both."""

    def __init__(self, C: int) -> None:
        super().__init__()

        def conv_bn_gelu(c_in: int, c_out: int, k: int) -> nn.Sequential:
            conv = nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=False)
            return nn.Sequential(conv, nn.BatchNorm2d(c_out), nn.GELU())

        self.fuse = conv_bn_gelu(C, C // 8, 1)  # at 2G
        self.refine = conv_bn_gelu(C // 8, C // 8, 3)  # at 4G, with SAM's map and F_early
        self.out = conv_bn_gelu(C // 8, C // 16, 3)  # at 8G, with F_early
        self.token_mlp = MLP(C, C, C // 16, 3)

    def forward(
        self,
        token: torch.Tensor,
        F_out: torch.Tensor,
        F_P: torch.Tensor,
        sam_up: torch.Tensor,
        early_4G: torch.Tensor,
        early_8G: torch.Tensor,
        fuse_first: bool = False,
    ) -> torch.Tensor:
        """
        Args:
            token: (B, C) the task's SAMA token after the decoder.
            F_out: (B, C, G, G) F'_out, the decoder's image tokens after the last adapter.
            F_P: (B, C, 2G, 2G) the local tokens after the last adapter.
            sam_up: (B, C/8, 4G, 4G) SAM's own up-scaled decoder map (output_upscaling).
            early_4G, early_8G: (B, C/8, 4G, 4G), (B, C/8, 8G, 8G) F_early up-sampled.
            fuse_first: the 2G stage's 1x1 convolution (linear, no bias) commutes with the
                bilinear up-sampling, conv(up2(F_out) + F_P) = up2(conv(F_out)) + conv(F_P), so
                it mixes F_out's C channels down to C/8 at G, before the up-sampling
                (SAMA.fast_prompt); False: the textbook form, as the paper draws the head.
        Returns:
            logits (B, 1, 8G, 8G).
        """
        if fuse_first:
            conv, bn, gelu = self.fuse
            x = gelu(bn(up2(conv(F_out)) + conv(F_P)))  # (B, C/8, 2G, 2G)
        else:  # the textbook form
            x = self.fuse(up2(F_out) + F_P)  # (B, C/8, 2G, 2G)
        x = self.refine(up2(x) + sam_up + early_4G)  # (B, C/8, 4G, 4G)
        x = self.out(up2(x) + early_8G)  # (B, C/16, 8G, 8G)
        B, c, h, w = x.shape
        return (self.token_mlp(token)[:, None, :] @ x.view(B, c, h * w)).view(B, 1, h, w)


def up2(x: torch.Tensor) -> torch.Tensor:
    """(B, c, h, w) -> (B, c, 2h, 2w), bilinear: the heads' interpolation up-sampling."""
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


# ----------------------------------------------------------------------------------------------
# SAMA
# ----------------------------------------------------------------------------------------------


@dataclass
class ImageFeatures:
    """What SAMA computes before the prompt is known; SamaPredictor keeps it for every prompt."""

    F_I: torch.Tensor  # (B, C, G, G) SAM's embedding of the global view
    F_local: torch.Tensor  # (B*n*n, (2G/n)^2, C) the local tokens F'^P + F_early, by window
    early_4G: torch.Tensor  # (B, C/8, 4G, 4G) F_early up-sampled for the heads
    early_8G: torch.Tensor  # (B, C/8, 8G, 8G)
    pe_global: torch.Tensor  # (1, G*G, C) positional encoding of the decoder's image tokens
    pe_global_windows: torch.Tensor  # (B*n*n, (G/n)^2, C) the same, by window
    pe_local_windows: torch.Tensor  # (B*n*n, (2G/n)^2, C) positional encoding of the local tokens
    # the first Local-Adapter's K_A, V_A and Q_L of F_local (LocalAdapter.project_local), each
    # (B*n*n, (2G/n)^2, C/2); without Local-Adapters, (0,)
    K_A: torch.Tensor
    V_A: torch.Tensor
    Q_L: torch.Tensor


def for_prompts(features: ImageFeatures, n: int) -> ImageFeatures:
    """The features tiled n times along their batch: B images -> n*B rows, image b's on rows
    b, B + b, 2B + b, ...; one image -> its features for each of n prompts (a view where the
    batch is 1, read only; copies of the windows, whose batch is B*n*n). pe_global, the same for
    every image, stays (1, G*G, C)."""

    if isinstance(n, int) and n == 1:  # (an exported graph's batch is symbolic: tiled)
        return features

    def tile(t: torch.Tensor) -> torch.Tensor:
        if t.shape[0] == 1:
            return t.expand(n, *t.shape[1:])
        return t.repeat(n, *[1] * (t.dim() - 1))

    return ImageFeatures(**{f.name: getattr(features, f.name) if f.name == "pe_global"
                            else tile(getattr(features, f.name)) for f in fields(ImageFeatures)})


class SAMA(nn.Module):
    """SAM, frozen, plus MVLE, two Local-Adapters, two SAMA tokens and two prediction heads.

    A switch turned off removes its module (the ablations of Tables 3-4 are real configurations):
    without MVLE no local view is encoded; without Local-Adapters the decoder runs as SAM's.
    "Without MVLE" has a second reading, which the study runs too (DESIGN.md, "The ablations'
    inputs"): use_mvle with mvle_attention=False keeps the local views and their features
    (stitched in place of F'^P) and removes only MVLE's cross-attention.
    """

    # what load_sam_weights read the weights from (a CheckpointRecord: the file, its tasks and
    # threshold, the SAM file's record); None: made in memory
    checkpoint_record = None
    # a prompt's fast form: the first Local-Adapter's projections of F_local read from
    # ImageFeatures (computed once per image, not once per pass) and the heads' 1x1 convolution at
    # G (PredictionHead's fuse_first). False: the textbook form. Tests prove the two equal; per
    # prompt at ViT-B, 1024 px on the CPU it took 0.84x-0.86x the textbook form's time at one
    # thread (BENCHMARKS.md, "A prompt's parts": `python -m benchmarks.benchmark` prints both)
    fast_prompt = True

    def __init__(self, sam: Sam, use_mvle: bool = True, use_local_adapter: bool = True,
                 mvle_attention: bool = True) -> None:
        super().__init__()
        self.sam = sam.requires_grad_(False)
        self.use_mvle, self.use_local_adapter = use_mvle, use_local_adapter
        # without MVLE there is no attention of MVLE's to keep: the switch is then True, unused
        self.mvle_attention = mvle_attention or not use_mvle
        cfg = sam.config
        G, C, D = cfg.grid_size, cfg.prompt_embed_dim, cfg.encoder_embed_dim
        heads = cfg.decoder_num_heads
        if G % (2 * ADAPTER_WINDOWS):
            raise ValueError(f"SAMA needs a token grid divisible by {2 * ADAPTER_WINDOWS}; "
                             f"{cfg.name} has {G}")
        self.mvle = MVLE(C, heads, G) if use_mvle and self.mvle_attention else None
        # F_early (the first global-attention block, D channels) on the local tokens' grid at the
        # decoder's width: the local views' own, 1x1; without MVLE only the global view is
        # encoded, so its own, up-sampled x2 by a learned transposed convolution (DESIGN.md)
        to_local_grid = (nn.Conv2d(D, C, kernel_size=1) if use_mvle
                         else nn.ConvTranspose2d(D, C, kernel_size=2, stride=2))
        self.early_proj = nn.Sequential(to_local_grid, LayerNorm2d(C))
        # F_early up-sampled on to the heads' 4G and 8G stages by transposed convolutions, as
        # HQ-SAM brings its early features to its mask's resolution; shared by both heads
        self.early_up = nn.ModuleList([
            nn.Sequential(nn.ConvTranspose2d(C, C // 8, kernel_size=2, stride=2),
                          LayerNorm2d(C // 8), nn.GELU()),  # 2G -> 4G
            nn.ConvTranspose2d(C // 8, C // 8, kernel_size=2, stride=2),  # 4G -> 8G
        ])
        depth = len(sam.mask_decoder.transformer.layers)
        self.local_adapters = (nn.ModuleList(LocalAdapter(C, heads) for _ in range(depth))
                               if use_local_adapter else None)
        self.sama_tokens = nn.Embedding(len(TASKS), C)
        self.heads = nn.ModuleList(PredictionHead(C) for _ in TASKS)

    @property
    def config(self) -> dict:
        return {"variant": self.sam.config.name, "use_mvle": self.use_mvle,
                "use_local_adapter": self.use_local_adapter, "mvle_attention": self.mvle_attention}

    def encode(self, images: torch.Tensor, images_local: Optional[torch.Tensor]) -> ImageFeatures:
        """Everything that does not depend on the prompt.

        Args:
            images: (B, 3, S, S) global frames.
            images_local: (B, 3, 2S, 2S), the same view at twice the resolution: its quadrants are
                the local views (unused without MVLE).
        """
        B, n = images.shape[0], ADAPTER_WINDOWS
        with torch.no_grad():  # SAM is frozen: keep no activation of the encoder for backward
            views = images[:, None]  # (B, 1, 3, S, S)
            if self.use_mvle:
                local_views = split_quadrants(images_local).transpose(1, 2)  # (B, 4, 3, S, S)
                views = torch.cat([views, local_views], dim=1)  # (B, 5, 3, S, S)
            # one image's views form one encoder batch: the memory of global attention stays bounded
            encoded = [self.sam.image_encoder(v) for v in views]
            F_views = torch.stack([e for e, _ in encoded])  # (B, V, C, G, G)
            early = torch.stack([f for _, f in encoded]).permute(0, 1, 4, 2, 3)  # (B, V, D, G, G)
            F_I, G = F_views[:, 0], F_views.shape[-1]
            pe_layer = self.sam.prompt_encoder.pe_layer
            pe_global = pe_layer((G, G)).permute(1, 2, 0)[None]  # (1, G, G, C)
            pe_local = pe_layer((2 * G, 2 * G)).permute(1, 2, 0)[None]  # (1, 2G, 2G, C)
        if not self.use_mvle:  # the global view's early features (B, D, G, G)
            early = early[:, 0]
        else:  # each local view's own, stitched in place (B, D, 2G, 2G)
            early = stitch_quadrants(early[:, 1:].transpose(1, 2))
        F_early = self.early_proj(early)  # (B, C, 2G, 2G): on the local tokens' grid
        early_4G = self.early_up[0](F_early)  # (B, C/8, 4G, 4G)
        early_8G = self.early_up[1](early_4G)  # (B, C/8, 8G, 8G)
        if not self.use_mvle:
            F_local = F_early  # the no-MVLE ablation: F_early alone (DESIGN.md)
        elif self.mvle is None:
            # the other reading of "without MVLE": the local views' features F^{L_m}, stitched
            # in place, stand for F'^P (no cross-attention)
            F_local = stitch_quadrants(F_views[:, 1:].transpose(1, 2)) + F_early
        else:
            # the residual fusion inside Eqs. (5)-(6): F'^P + F_early
            F_local = self.mvle(F_I, F_views[:, 1:], pe_layer) + F_early
        F_local = to_windows(F_local.permute(0, 2, 3, 1), n)  # (B*n*n, (2G/n)^2, C)
        pe_local = to_windows(pe_local, n).repeat(B, 1, 1)  # (B*n*n, (2G/n)^2, C)
        if self.local_adapters is None:
            projected = (F_local.new_zeros(0),) * 3
        else:
            projected = self.local_adapters[0].project_local(F_local, pe_local)
        return ImageFeatures(
            F_I=F_I,
            F_local=F_local,
            early_4G=early_4G,
            early_8G=early_8G,
            pe_global=pe_global.flatten(1, 2),  # (1, G*G, C)
            pe_global_windows=to_windows(pe_global, n).repeat(B, 1, 1),  # (B*n*n, (G/n)^2, C)
            pe_local_windows=pe_local,
            K_A=projected[0], V_A=projected[1], Q_L=projected[2],
        )

    def decode(
        self,
        features: ImageFeatures,
        task: str,
        points: Optional[torch.Tensor] = None,
        point_labels: Optional[torch.Tensor] = None,
        boxes: Optional[torch.Tensor] = None,
        mask_inputs: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """SAM's prompt encoder, then decode_embedded -> logits (B, 1, 8G, 8G)."""
        prompt = (points, point_labels) if points is not None else None
        sparse, dense = self.sam.prompt_encoder(prompt, boxes, mask_inputs)
        return self.decode_embedded(features, task, sparse, dense)

    def decode_embedded(
        self, features: ImageFeatures, task: str, sparse: torch.Tensor, dense: torch.Tensor
    ) -> torch.Tensor:
        """SAM's decoder with this task's SAMA token and the Local-Adapters, on the prompt
        encoder's tokens sparse (P, T', C) and dense embedding (P or 1, C, G, G) -> logits
        (B, 1, 8G, 8G). The features are of B images, one prompt each (P = B or 1: training), or
        of one image with P prompts (B = P: its features shared by every prompt, for_prompts).
        (The ONNX prompt path enters through decode_tasks.)

        Each task runs its own pass with only its own token ("two SAMA tokens are used
        separately"), so the segmentation output does not depend on the matting token or head,
        and vice versa.
        """
        t = TASKS.index(task)
        token, F_out, F_P, sam_up, features = self.decode_pass(
            features, self.sama_tokens.weight[t : t + 1], sparse, dense)
        return self.heads[t](token, F_out, F_P, sam_up, features.early_4G, features.early_8G,
                             fuse_first=self.fast_prompt)

    def decode_tasks(
        self, features: ImageFeatures, tasks: tuple[str, ...], sparse: torch.Tensor,
        dense: torch.Tensor,
    ) -> list[torch.Tensor]:
        """decode_embedded for each task, in the order given -> [logits (B, 1, 8G, 8G)]: a pass
        per task over the batch, one image's features tiled once for its B prompts.

        (Not kept: the tasks' passes as one pass over 2B rows, equal within float rounding but
        no faster; BENCHMARKS.md, "Many prompts in one call".)
        """
        if features.F_I.shape[0] == 1:  # one image, B prompts: its features for each, once
            features = for_prompts(features, self.prompt_batch(features, sparse))
        return [self.decode_embedded(features, task, sparse, dense) for task in tasks]

    @staticmethod
    def prompt_batch(features: ImageFeatures, sparse: torch.Tensor) -> int:
        """The batch of a pass: B images with one prompt each (or one prompt for all), or one
        image with P prompts."""
        B, P = features.F_I.shape[0], sparse.shape[0]
        if B != 1 and P not in (1, B):
            raise ValueError(f"{P} prompts for {B} images: give one prompt per image, or one "
                             f"image")
        return max(B, P) if B != 1 else P

    def decode_pass(
        self, features: ImageFeatures, sama_token: torch.Tensor, sparse: torch.Tensor,
        dense: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, ImageFeatures]:
        """The two-way transformer with the Local-Adapters, on a task's SAMA token (1, C) ->
        the SAMA token after the decoder (B, C), F'_out (B, C, G, G), the local tokens F_P
        (B, C, 2G, 2G), SAM's up-scaled map (B, C/8, 4G, 4G), and the features the pass read
        (one image's repeated for its B prompts)."""
        dec = self.sam.mask_decoder
        B = self.prompt_batch(features, sparse)
        if features.F_I.shape[0] == 1:  # one image, B prompts: its features for each prompt
            features = for_prompts(features, B)
        G = features.F_I.shape[-1]
        # the tokens: SAM's IoU and mask tokens (frozen), the task's SAMA token, the prompt tokens
        output_tokens = torch.cat([dec.iou_token.weight, dec.mask_tokens.weight])  # (5, C)
        tokens = torch.cat([output_tokens.expand(B, -1, -1), sama_token.expand(B, -1, -1),
                            sparse.expand(B, -1, -1)], dim=1)  # (B, T, C)
        keys = (features.F_I + dense).flatten(2).transpose(1, 2)  # (B, G*G, C): the image tokens
        key_pe = features.pe_global  # (1, G*G, C)
        F_local = features.F_local
        queries = tokens  # (B, T, C)
        # the first adapter's projections of F_local, from the cache (fast_prompt)
        cached = (features.K_A, features.V_A, features.Q_L) if self.fast_prompt else None
        for i, layer in enumerate(dec.transformer.layers):
            queries, keys = layer(queries, keys, tokens, key_pe)  # keys: F_out
            if self.local_adapters is not None:  # keys: F'_out, the next layer's input
                keys, F_local = self.local_adapters[i](
                    keys, F_local, features.pe_global_windows, features.pe_local_windows,
                    cached if i == 0 else None)
        queries = dec.transformer.final_attention(queries, keys, tokens, key_pe)
        F_out = keys.transpose(1, 2).unflatten(2, (G, G))  # (B, C, G, G)
        F_P = from_windows(F_local, ADAPTER_WINDOWS, 2 * G, 2 * G)  # (B, 2G, 2G, C)
        F_P = F_P.permute(0, 3, 1, 2)  # (B, C, 2G, 2G)
        sam_up = dec.output_upscaling(F_out)  # (B, C/8, 4G, 4G)
        token = queries[:, 1 + dec.num_mask_tokens]  # (B, C): the task's SAMA token
        return token, F_out, F_P, sam_up, features

    def forward(
        self,
        images: torch.Tensor,
        images_local: Optional[torch.Tensor],
        points: Optional[torch.Tensor] = None,
        point_labels: Optional[torch.Tensor] = None,
        boxes: Optional[torch.Tensor] = None,
        mask_inputs: Optional[torch.Tensor] = None,
        tasks: tuple[str, ...] = TASKS,
        with_sam: bool = True,
    ) -> dict[str, torch.Tensor]:
        """Batched, differentiable: the one path of training (train.py, SamaLoss).

        Args:
            images (B, 3, S, S), images_local (B, 3, 2S, 2S): frames (see `sam.image_to_frame`).
            points (B, N, 2) and point_labels (B, N), boxes (B, 4): frame pixels;
            mask_inputs (B, 1, 4G, 4G). tasks: which heads to run. with_sam: also run plain SAM's
            decoder (training reads no loss from it and turns it off).
        Returns:
            "seg_logits" (B, 1, 8G, 8G) and / or "alpha" (B, 1, 8G, 8G) in [0, 1], and with
            with_sam "sam_logits" (B, 1, 4G, 4G): plain SAM's single-mask output for the same
            prompt (the baseline).
        """
        features = self.encode(images, images_local)
        prompts = (points, point_labels, boxes, mask_inputs)
        out = {}
        if with_sam:
            with torch.no_grad():
                out["sam_logits"] = self.sam.decode(features.F_I, *prompts)[0]
        if "seg" in tasks:
            out["seg_logits"] = self.decode(features, "seg", *prompts)
        if "matting" in tasks:
            out["alpha"] = torch.sigmoid(self.decode(features, "matting", *prompts))
        return out


class SamaPredictor:
    """Encode an image once (five views and MVLE), then prompt it as often as you like: SAMA's
    side of sam.SamPredictor's predict_torch, on tensors. The project's predictor contract (the
    image and the prompt checked, a dict of named numpy maps, the same for SAM and SAMA) is
    predictor.Predictor, which reads SAMA through this class.

    On CUDA a prompt replays a CUDA graph, captured at the first prompt of each shape (number of
    points, box or not, autocast): one prompt is three decoder passes of a few hundred small
    kernels, whose launches from Python, not the GPU's work, would otherwise set its time
    (BENCHMARKS.md). `_decode` is the textbook form the graph records, the one used on the CPU;
    tests/test_cuda.py proves the two equal. The graphs read the model's weights and the cached
    image features where they lie, so the model must not be replaced while the predictor is in use
    (loading weights in place is fine).
    """

    def __init__(self, sama: SAMA, tasks: tuple[str, ...] = TASKS) -> None:
        """tasks: the heads whose pass a prompt runs (a model trained for one task: that one; the
        other head's pass, untrained, is not run)."""
        if not tasks or not set(tasks) <= set(TASKS):
            raise ValueError(f"SAMA's predictor needs the tasks its heads were trained for, a "
                             f"non-empty subset of {TASKS}; got {tasks!r}")
        self.model = sama.eval()
        self.tasks = tuple(t for t in TASKS if t in tasks)
        self.features: Optional[ImageFeatures] = None
        # prompt shape -> (graph, its inputs, its outputs); the graphs share one memory pool:
        # each replay's outputs are read before the next
        self.graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, list, tuple]] = {}
        self.graph_pool = None

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
        same_shapes = [(t.shape, t.dtype) for t in cached] == [(t.shape, t.dtype) for t in new]
        if self.graphs and same_shapes:
            for c, n in zip(cached, new):  # the graphs read the features there
                c.copy_(n)
        else:
            self.graphs.clear()
            self.features = features
        self.original_size = image.shape[:2]
        self.input_size = preprocess_shape(image.shape[0], image.shape[1], S)

    @torch.inference_mode()
    def predict_torch(
        self,
        point_coords: Optional[torch.Tensor] = None,
        point_labels: Optional[torch.Tensor] = None,
        boxes: Optional[torch.Tensor] = None,
    ) -> dict[str, torch.Tensor]:
        """B prompts in frame pixels (sam.prompt_tensors, one row each): points (B, N, 2), labels
        (B, N), boxes (B, 4). Returns SAMA.forward's maps at the image's size, float32: "seg_logits"
        (B, H, W) and "alpha" (B, H, W) in [0, 1], each where its task is in self.tasks, and plain
        SAM's single-mask "sam_logits" (B, H, W).
        The decoders run once over the B prompts (_decode); each prompt's maps equal its own call's
        within float rounding (tests/test_batch.py)."""
        S = self.model.sam.config.image_size
        prompts = (point_coords, point_labels, boxes)
        decode = self._decode_graphed if self.model.sam.device.type == "cuda" else self._decode
        sam_logits, seg_logits, alpha = decode(prompts)
        decoded = {name: m for name, m in (("seg_logits", seg_logits), ("alpha", alpha))
                   if m is not None}
        # the SAMA maps (8G) in one resize; SAM's (4G) as SamPredictor resizes it
        maps = torch.cat(list(decoded.values()), 1).float()
        maps = postprocess_masks(maps, S, self.input_size, self.original_size).unbind(1)
        out = dict(zip(decoded, maps))
        if "alpha" in out:  # the resize's rounding can step one ulp past 1 where alpha is 1
            out["alpha"] = out["alpha"].clamp(0, 1)
        sam_mask = postprocess_masks(sam_logits.float(), S, self.input_size, self.original_size)
        return {**out, "sam_logits": sam_mask[:, 0]}

    def _decode(self, prompts: tuple) -> tuple:
        """SAM's logits (B, 1, 4G, 4G), SAMA's segmentation logits and alpha (B, 1, 8G, 8G) for
        B prompts: SAM's decoder once over them, then each of self.tasks' passes once over them
        (decode_tasks); a task not in self.tasks gives None."""
        points, labels, boxes = prompts
        sam_logits = self.model.sam.decode(self.features.F_I, *prompts)[0]
        sparse, dense = self.model.sam.prompt_encoder(
            (points, labels) if points is not None else None, boxes, None)
        maps = dict(zip(self.tasks, self.model.decode_tasks(self.features, self.tasks, sparse,
                                                            dense)))
        alpha = maps.get("matting")
        return sam_logits, maps.get("seg"), None if alpha is None else torch.sigmoid(alpha)

    def _decode_graphed(self, prompts: tuple) -> tuple:
        """_decode replayed from a CUDA graph; the outputs are overwritten by the next replay."""
        amp = torch.is_autocast_enabled("cuda"), torch.get_autocast_dtype("cuda")
        key = (tuple(None if p is None else tuple(p.shape) for p in prompts), amp)
        if key not in self.graphs:
            inputs = [None if p is None else p.clone() for p in prompts]
            # autocast's cache of cast weights would be freed after the capture: cast in the graph
            no_cache = torch.autocast("cuda", dtype=amp[1], enabled=amp[0], cache_enabled=False)
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side), no_cache:
                self._decode(inputs)  # warm-up outside the capture (library handles, lazy init)
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
    return [getattr(features, f.name) for f in fields(features)]
