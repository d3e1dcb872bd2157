"""Matmul FLOPs of the DiT counted from its shapes: the numerator of model FLOPs utilisation (MFU)."""

from model.dit import DiTConfig

FREQ_DIM = 256  # the timestep sinusoid's width (TimestepEmbedder)


def _attention(tokens: int, context: int, dim: int) -> int:
    """q, kv and output projections plus QK^T and AV, in multiply-adds."""
    return tokens * dim * dim + context * 2 * dim * dim + 2 * tokens * context * dim + tokens * dim * dim


def forward_flops(cfg: DiTConfig) -> int:
    """FLOPs (2 per multiply-add) of one sample's forward pass: every matmul, convolution and attention product."""
    D, N = cfg.hidden_size, (cfg.image_size // cfg.patch_size) ** 2
    hidden = int(D * cfg.mlp_ratio)
    out_channels = cfg.in_channels * (2 if cfg.learn_sigma else 1)
    patch = cfg.in_channels * cfg.patch_size ** 2
    mlp = 2 * N * D * hidden
    macs = 2 * N * patch * D                                  # target and condition patch embeddings
    macs += FREQ_DIM * D + D * D                              # timestep MLP
    if cfg.camera_dim:
        macs += cfg.camera_dim * D + D * D
    macs += cfg.cond_depth * (_attention(N, N, D) + mlp)      # condition blocks: run once per sample
    macs += cfg.depth * (9 * D * D + 2 * _attention(N, N, D) + mlp)  # adaLN, self- and cross-attention, MLP
    macs += 2 * D * D + N * D * cfg.patch_size ** 2 * out_channels   # final adaLN and output projection
    return 2 * macs


def train_flops(cfg: DiTConfig) -> int:
    """FLOPs of one training sample: forward plus backward, counted as 3x the forward (the usual convention)."""
    return 3 * forward_flops(cfg)
