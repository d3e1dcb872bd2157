"""Named model sizes: `seed` (the original's sizes), `small`, `demo` (CPU reference model) and `tiny` (tests)."""

import dataclasses

from model.diffusion import DiffusionConfig
from model.dit import DiTConfig

PRESETS = {
    # The original project's sizes (64 px, patch 4, hidden 512, 8 heads, depth 8) and its diffusion, with the fixes.
    "seed": (DiTConfig(image_size=64, patch_size=4, hidden_size=512, depth=8, num_heads=8, cond_depth=2,
                       cond_direct=False),
             DiffusionConfig(schedule="linear", prediction="eps")),
    # 64 px at a size one CPU can train for hours; no direct condition path, as demo (docs/study.md).
    "small": (DiTConfig(image_size=64, patch_size=4, hidden_size=256, depth=6, num_heads=4, cond_depth=1,
                        cond_direct=False),
              DiffusionConfig(schedule="cosine", prediction="v")),
    # 32 px, patch 4 (64 tokens), D=192, depth 6, v-prediction, cosine schedule: the fastest learner of the
    # equal-minute study (docs/study.md); without the direct condition path it learned faster on two seeds.
    "demo": (DiTConfig(image_size=32, patch_size=4, hidden_size=192, depth=6, num_heads=3, cond_depth=1,
                       cond_direct=False),
             DiffusionConfig(schedule="cosine", prediction="v")),
    # Tests and checks: a training step takes milliseconds (keeps the direct path so its code stays exercised).
    "tiny": (DiTConfig(image_size=32, patch_size=4, hidden_size=64, depth=2, num_heads=2, cond_depth=1,
                       cond_direct=True),
             DiffusionConfig(schedule="cosine", prediction="v")),
}


def get_preset(name: str, **overrides) -> tuple[DiTConfig, DiffusionConfig]:
    """Fresh (DiTConfig, DiffusionConfig) of a preset; each override sets that field in every config that has it."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    configs = [dataclasses.replace(c) for c in PRESETS[name]]
    for key, value in overrides.items():
        owners = [c for c in configs if key in {f.name for f in dataclasses.fields(c)}]
        if not owners:
            raise ValueError(f"unknown model/diffusion option {key!r}")
        for c in owners:
            setattr(c, key, value)
    return configs[0], configs[1]
