"""Turntables: a ring of views generated from one image, and the strip / animation frames that show them."""
import math

from PIL import Image

from datasets.images import to_pil
from model.dit import camera_vector

TURN_DEG = 60.0          # the turn a fixed-angle model learned (the training pairs' delta azimuth)
DISPLAY_MIN_PX = 128     # strips and GIFs are enlarged (nearest neighbour) to at least this many pixels a side


def turn_angles(n_views, camera_dim):
    """Azimuth of each view in degrees: 360/N apart for a relative-camera model, TURN_DEG apart otherwise."""
    step = 360.0 / n_views if camera_dim else TURN_DEG
    return [step * k for k in range(n_views)]


def turntable_views(generate, cond, n_views, camera_dim):
    """N views [B,3,H,W] starting with `cond` itself.

    A relative-camera model is asked for every angle directly from the input (no drift); a fixed-angle model
    turns its own previous output again, so view k has gone through k generations.
    `generate(cond, camera)` runs the sampler on a batch.
    """
    views = [cond]
    for angle in turn_angles(n_views, camera_dim)[1:]:
        if camera_dim:
            camera = camera_vector(angle).expand(cond.shape[0], -1)
            views.append(generate(cond, camera))
        else:
            views.append(generate(views[-1], None))
    return views


def display_frames(views, index):
    """The views of batch item `index` as PIL images enlarged for viewing."""
    frames = [to_pil(v[index]) for v in views]
    side = frames[0].width
    scale = max(1, math.ceil(DISPLAY_MIN_PX / side))
    return [f.resize((side * scale, side * scale), Image.Resampling.NEAREST) for f in frames]


def strip_image(frames):
    """Frames side by side, left to right in turning order."""
    strip = Image.new("RGB", (sum(f.width for f in frames), frames[0].height))
    x = 0
    for f in frames:
        strip.paste(f, (x, 0))
        x += f.width
    return strip

