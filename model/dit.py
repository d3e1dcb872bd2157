"""Stream-block Diffusion Transformer: denoises the turned view of an object given its source view."""

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class DiTConfig:
    """Network sizes and options; a plain dataclass so it round-trips through JSON."""

    image_size: int = 32
    patch_size: int = 4
    in_channels: int = 3
    hidden_size: int = 192
    depth: int = 6             # stream blocks (timestep-modulated self + cross attention + MLP)
    num_heads: int = 3
    mlp_ratio: float = 4.0
    cond_depth: int = 1        # plain blocks refining the condition tokens (independent of t, run once per sample)
    camera_dim: int = 0        # 0: a fixed-turn model (its data's one turn); 4: relative camera vector (datasets.camera)
    cond_dropout: float = 0.1  # training probability of swapping the condition for the learned null condition
    learn_sigma: bool = True   # output 2 * in_channels: prediction + variance interpolation (Improved DDPM)
    rope_base: float = 10000.0


@dataclass
class CondState:
    """Everything a denoising step needs from the condition, computed once by StreamDiT.encode_cond."""

    tokens: torch.Tensor                # [B, N, D] refined condition tokens (keys/values of cross-attention)
    camera: torch.Tensor | None         # [B, D] relative-camera embedding added to the timestep embedding, or None


def rope_angles(grid: int, head_dim: int, base: float) -> torch.Tensor:
    """RoPE angles [grid*grid, head_dim/2]: first half of the pairs turn with the row, second half with the column."""
    quarter = head_dim // 4
    freqs = base ** (-torch.arange(quarter, dtype=torch.float64) / quarter)
    rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    row_angles = rows.reshape(-1, 1).double() * freqs
    col_angles = cols.reshape(-1, 1).double() * freqs
    return torch.cat([row_angles, col_angles], dim=-1).float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (x[i], x[i + d/2]) of the last dim of x [B, H, N, d] by the angles behind cos/sin [N, d/2]."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Softmax attention over [B, H, N, d]. On CUDA the fused flash kernel; on a CPU written out as two matmuls and an
    fp32 softmax, which at this model's 64-256 tokens trains 2-4x faster than the fused CPU kernel (docs/model.md)."""
    if q.is_cuda:
        return F.scaled_dot_product_attention(q, k, v)
    scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)
    return scores.float().softmax(dim=-1).to(v.dtype) @ v


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN: per-sample shift and scale of normalised tokens."""
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class Attention(nn.Module):
    """Multi-head attention with QK RMS-norm, 2-D RoPE and an output projection; self-attention when context is None."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.q_norm = nn.RMSNorm(head_dim, eps=1e-6)
        self.k_norm = nn.RMSNorm(head_dim, eps=1e-6)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, rope, context=None):
        B, N, D = x.shape
        context = x if context is None else context
        q = self.q(x).view(B, N, self.num_heads, -1).transpose(1, 2)
        k, v = self.kv(context).view(B, context.shape[1], 2, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        cos, sin = rope
        # Norm and rotation in fp32 (bf16-autocast safe); target queries and condition keys share grid positions.
        q = apply_rope(self.q_norm(q.float()), cos, sin).to(v.dtype)
        k = apply_rope(self.k_norm(k.float()), cos, sin).to(v.dtype)
        out = attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(B, N, D))


class Mlp(nn.Module):
    """Two-layer GELU MLP with hidden expansion mlp_ratio."""

    def __init__(self, dim: int, mlp_ratio: float):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class CondBlock(nn.Module):
    """Plain pre-norm transformer block refining condition tokens; does not see the timestep."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, mlp_ratio)

    def forward(self, x, rope):
        x = x + self.attn(self.norm1(x), rope)
        return x + self.mlp(self.norm2(x))


class StreamBlock(nn.Module):
    """adaLN-Zero block: self-attention over target tokens, cross-attention to condition tokens, MLP."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.self_attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.cross_attn = Attention(dim, num_heads)
        self.norm3 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(dim, mlp_ratio)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 9 * dim))  # shift/scale/gate for the three branches

    def forward(self, x, c, cond_tokens, rope):
        s1, m1, g1, s2, m2, g2, s3, m3, g3 = self.ada(c).chunk(9, dim=-1)
        x = x + g1.unsqueeze(1) * self.self_attn(modulate(self.norm1(x), s1, m1), rope)
        x = x + g2.unsqueeze(1) * self.cross_attn(modulate(self.norm2(x), s2, m2), rope, cond_tokens)
        return x + g3.unsqueeze(1) * self.mlp(modulate(self.norm3(x), s3, m3))


class FinalLayer(nn.Module):
    """Norm, adaLN modulation and a linear map from each token to its output patch."""

    def __init__(self, dim: int, patch_size: int, out_channels: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.linear = nn.Linear(dim, patch_size * patch_size * out_channels)

    def forward(self, x, c):
        shift, scale = self.ada(c).chunk(2, dim=-1)
        return self.linear(modulate(self.norm(x), shift, scale))


class TimestepEmbedder(nn.Module):
    """Sinusoid of the integer diffusion step (used as is: no rescaling), then an MLP."""

    def __init__(self, dim: int, freq_dim: int = 256, max_period: float = 10000.0):
        super().__init__()
        half = freq_dim // 2
        self.register_buffer("freqs", torch.exp(-math.log(max_period) * torch.arange(half) / half), persistent=False)
        self.mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t):
        args = t.float()[:, None] * self.freqs[None]
        return self.mlp(torch.cat([torch.cos(args), torch.sin(args)], dim=-1))


class StreamDiT(nn.Module):
    """The view-synthesis DiT: noisy target tokens attend to themselves and to the (refined) condition tokens."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        if cfg.image_size % cfg.patch_size or cfg.hidden_size % cfg.num_heads or (cfg.hidden_size // cfg.num_heads) % 4:
            raise ValueError("image_size must be a multiple of patch_size and hidden_size/num_heads a multiple of 4")
        self.cfg = cfg
        D, p = cfg.hidden_size, cfg.patch_size
        self.out_channels = cfg.in_channels * (2 if cfg.learn_sigma else 1)
        self.grid = cfg.image_size // p
        self.x_embed = nn.Conv2d(cfg.in_channels, D, kernel_size=p, stride=p)
        self.cond_embed = nn.Conv2d(cfg.in_channels, D, kernel_size=p, stride=p)
        self.null_cond = nn.Parameter(torch.zeros(1, self.grid * self.grid, D))  # learned "no condition" tokens
        self.t_embed = TimestepEmbedder(D)
        self.camera_embed = (nn.Sequential(nn.Linear(cfg.camera_dim, D), nn.SiLU(), nn.Linear(D, D))
                             if cfg.camera_dim else None)
        self.cond_blocks = nn.ModuleList(CondBlock(D, cfg.num_heads, cfg.mlp_ratio) for _ in range(cfg.cond_depth))
        self.cond_norm = nn.LayerNorm(D, eps=1e-6)
        self.blocks = nn.ModuleList(StreamBlock(D, cfg.num_heads, cfg.mlp_ratio) for _ in range(cfg.depth))
        self.final = FinalLayer(D, p, self.out_channels)
        angles = rope_angles(self.grid, D // cfg.num_heads, cfg.rope_base)
        self.register_buffer("rope_cos", angles.cos(), persistent=False)
        self.register_buffer("rope_sin", angles.sin(), persistent=False)
        self._init_weights()

    def _init_weights(self):
        """DiT init: xavier linears, zero biases; adaLN and the output layer zeroed so every block starts as identity."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        for embed in (self.x_embed, self.cond_embed):
            nn.init.xavier_uniform_(embed.weight.view(embed.weight.shape[0], -1))
            nn.init.zeros_(embed.bias)
        nn.init.normal_(self.null_cond, std=0.02)
        for layer in self.t_embed.mlp[0::2]:
            nn.init.normal_(layer.weight, std=0.02)
        for block in self.blocks:
            nn.init.zeros_(block.ada[-1].weight)
            nn.init.zeros_(block.ada[-1].bias)
        for layer in (self.final.ada[-1], self.final.linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def compile_blocks(self) -> None:
        """torch.compile each transformer block in place: the blocks share one compiled graph (a short warm-up, cached
        across runs by inductor) and the state_dict keeps its keys. Elementwise work, most of an eager step, fuses."""
        for block in (*self.cond_blocks, *self.blocks):
            block.compile()

    def _patchify(self, embed: nn.Conv2d, img: torch.Tensor) -> torch.Tensor:
        if img.shape[-1] != self.cfg.image_size or img.shape[-2] != self.cfg.image_size:
            raise ValueError(f"expected {self.cfg.image_size}x{self.cfg.image_size} images, got {tuple(img.shape[-2:])}")
        return embed(img).flatten(2).transpose(1, 2)

    def _unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        B, p, g, C = x.shape[0], self.cfg.patch_size, self.grid, self.out_channels
        x = x.view(B, g, g, p, p, C).permute(0, 5, 1, 3, 2, 4)
        return x.reshape(B, C, g * p, g * p)

    def encode_cond(self, cond, camera=None, drop_cond=None) -> CondState:
        """Condition work done once per sampling run: patch embedding (or the null tokens), refinement, camera."""
        tokens = self._patchify(self.cond_embed, cond)
        if drop_cond is None and self.training and self.cfg.cond_dropout > 0:
            drop_cond = torch.rand(cond.shape[0], device=cond.device) < self.cfg.cond_dropout
        if drop_cond is not None:
            tokens = torch.where(drop_cond.view(-1, 1, 1), self.null_cond.to(tokens.dtype), tokens)
        rope = (self.rope_cos, self.rope_sin)
        for block in self.cond_blocks:
            tokens = block(tokens, rope)
        camera_emb = None
        if self.camera_embed is None and camera is not None:
            raise ValueError("this model has no camera input (camera_dim=0): it always makes its training data's turn")
        if self.camera_embed is not None:
            if camera is None:  # the turn is the caller's (from the run's data), never a number assumed here
                raise ValueError("this model needs the relative camera of the wanted turn (datasets.camera.camera_vector)")
            camera_emb = self.camera_embed(camera.float())
        return CondState(self.cond_norm(tokens), camera_emb)

    def denoise(self, x_t, t, state: CondState) -> torch.Tensor:
        """One network evaluation for noisy targets x_t [B,C,H,W] at steps t [B] with a precomputed condition."""
        x = self._patchify(self.x_embed, x_t)
        c = self.t_embed(t)
        if state.camera is not None:
            c = c + state.camera
        rope = (self.rope_cos, self.rope_sin)
        for block in self.blocks:
            x = block(x, c, state.tokens, rope)
        return self._unpatchify(self.final(x, c))

    def forward(self, x_t, t, cond, camera=None, drop_cond=None) -> torch.Tensor:
        """Predict [B, out_channels, H, W] for noisy targets x_t at steps t given condition images cond."""
        return self.denoise(x_t, t, self.encode_cond(cond, camera, drop_cond))
