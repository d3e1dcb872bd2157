"""Named model sizes: `seed` (the original's sizes), `small`, `demo` and `demo64` (CPU reference models) and `tiny` (tests)."""

import dataclasses
import json

from model.diffusion import DiffusionConfig
from model.dit import DiTConfig

PRESETS = {
    # The original project's sizes (64 px, patch 4, hidden 512, 8 heads, depth 8) and its diffusion, with the fixes.
    "seed": (DiTConfig(image_size=64, patch_size=4, hidden_size=512, depth=8, num_heads=8, cond_depth=2),
             DiffusionConfig(schedule="linear", prediction="eps")),
    # 64 px at a size one CPU can train for hours.
    "small": (DiTConfig(image_size=64, patch_size=4, hidden_size=256, depth=6, num_heads=4, cond_depth=1),
              DiffusionConfig(schedule="cosine", prediction="v")),
    # 32 px, patch 4 (64 tokens), D=192, depth 6, v-prediction, cosine schedule: the fastest learner of the
    # equal-minute study (docs/study.md).
    "demo": (DiTConfig(image_size=32, patch_size=4, hidden_size=192, depth=6, num_heads=3, cond_depth=1),
             DiffusionConfig(schedule="cosine", prediction="v")),
    # `demo` at 64 px with patch 8: the same 64 tokens, so a step costs about a `demo` step, and `train --init-from`
    # grows a `demo` model into it (train/weights.py grow_patches). Not yet trained past copy's IoU (docs/study.md).
    "demo64": (DiTConfig(image_size=64, patch_size=8, hidden_size=192, depth=6, num_heads=3, cond_depth=1),
               DiffusionConfig(schedule="cosine", prediction="v")),
    # Tests and checks: a training step takes milliseconds; the shipped presets' paths at the smallest size.
    "tiny": (DiTConfig(image_size=32, patch_size=4, hidden_size=64, depth=2, num_heads=2, cond_depth=1),
             DiffusionConfig(schedule="cosine", prediction="v")),
}


# Options that lost their study (docs/study.md) and left the code; this is the last commit that had them.
REMOVED_IN = "cd2e8c3"
# Fields of removed options that a stored config may still carry at their off value (None: any value is off).
RETIRED_FIELDS = {"cond_direct": False, "loss_weighting": "none", "min_snr_gamma": None}
REMOVED_VALUES = {"prediction": "x0"}


def removed_option(key: str, value) -> bool:
    """True for a retired field at its off value (to be dropped); a ValueError where it asks for a removed option."""
    if key in RETIRED_FIELDS and RETIRED_FIELDS[key] in (None, value):
        return True
    if key in RETIRED_FIELDS or REMOVED_VALUES.get(key, object()) == value:
        raise ValueError(f"{key}={json.dumps(value)} was removed after losing its study (docs/study.md); "
                         f"it last lived in commit {REMOVED_IN}")
    return False


def configs_from_dict(config: dict) -> tuple[DiTConfig, DiffusionConfig]:
    """(DiTConfig, DiffusionConfig) of a stored config's "model" and "diffusion" sections."""
    model, diffusion = ({k: v for k, v in config[s].items() if not removed_option(k, v)} for s in ("model", "diffusion"))
    return DiTConfig(**model), DiffusionConfig(**diffusion)


def get_preset(name: str, **overrides) -> tuple[DiTConfig, DiffusionConfig]:
    """Fresh (DiTConfig, DiffusionConfig) of a preset; each override sets that field in every config that has it."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    configs = [dataclasses.replace(c) for c in PRESETS[name]]
    for key, value in overrides.items():
        if removed_option(key, value):
            continue
        owners = [c for c in configs if key in {f.name for f in dataclasses.fields(c)}]
        if not owners:
            raise ValueError(f"unknown model/diffusion option {key!r}")
        for c in owners:
            setattr(c, key, value)
    return configs[0], configs[1]
