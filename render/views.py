"""One object -> its view-pair samples: load, pick views, render, reject empty renders, encode PNGs, metadata."""
import json
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from render.camera import DEFAULT_ELEVATION_RANGE, FOV_DEG, sample_pairs
from render.shards import Failure, encode_png, sample_key

@dataclass
class RenderSettings:
    """What every object of a job is rendered with: the one place the render defaults are declared (cli.py too)."""
    size: int = 128   # twice the 64 px model: training downsizes, and bigger shards cost decode time (docs/train.md)
    pairs_per_object: int = 4
    delta_azimuth_deg: float = 60.0
    elevation_range: tuple = DEFAULT_ELEVATION_RANGE
    seed: int = 0
    backend: str = "auto"
    shard_size: int = 1000        # samples per shard
    timeout_s: float = 300.0      # an object still rendering after this long is abandoned
    min_coverage: float = 0.002   # fraction of opaque pixels below which a view counts as empty
    symmetric_share: float = 0.0  # procedural only: share of plain solids that look the same after the turn

    def job_record(self, source):
        """The settings that must match when adding to an existing output folder."""
        return {"source": source, "size": self.size, "pairs_per_object": self.pairs_per_object,
                "delta_azimuth_deg": self.delta_azimuth_deg, "elevation_range": list(self.elevation_range),
                "seed": self.seed, "fov_deg": FOV_DEG,
                **({"symmetric_share": self.symmetric_share} if self.symmetric_share else {})}   # old folders match


@dataclass
class ObjectSpec:
    """One object to render: `load(*args)` returns its normalised parts (a picklable function or object)."""
    uid: str
    source: str
    load: Callable
    args: tuple
    path: str | None = None
    meta: dict = field(default_factory=dict)


def render_object(renderer, spec, settings):
    """All samples of one object, or a Failure saying why there are none."""
    try:
        parts = spec.load(*spec.args)
    except ValueError as e:   # our own checks (scene.py) say what is wrong in words
        return Failure(f"unreadable: {str(e)[:200]}", spec.path)
    except Exception as e:   # any other reader error means the same to the user: this file cannot be used
        return Failure(f"unreadable: {type(e).__name__}: {str(e)[:200]}", spec.path)
    pairs = sample_pairs(settings.seed, spec.uid, settings.pairs_per_object, settings.delta_azimuth_deg,
                         settings.elevation_range)
    views = [view for pair in pairs for view in pair]
    try:
        images = renderer.render_views(parts, views)
    except Exception as e:
        return Failure(f"render failed: {type(e).__name__}: {str(e)[:200]}", spec.path)
    for view, image in zip(views, images):
        coverage = float((image[..., 3] > 0).mean())
        if coverage < settings.min_coverage:
            return Failure(f"empty render: {coverage:.2%} opaque pixels at azimuth {view.azimuth_deg:.1f}, "
                           f"elevation {view.elevation_deg:.1f}", spec.path)
    samples = []
    for i, (source_view, target_view) in enumerate(pairs):
        meta = {"uid": spec.uid, "source": spec.source, "pair": i, "delta_azimuth_deg": settings.delta_azimuth_deg,
                "fov_deg": FOV_DEG, "size": settings.size, "seed": settings.seed,
                "src": source_view.to_json(), "tgt": target_view.to_json()}
        if spec.path is not None:
            meta["path"] = spec.path
        if spec.meta:
            meta["meta"] = spec.meta
        samples.append({"__key__": sample_key(spec.uid, i), "src.png": encode_png(images[2 * i]),
                        "tgt.png": encode_png(images[2 * i + 1]),
                        "json": json.dumps(meta, ensure_ascii=False).encode("utf-8")})
    return samples
