"""Turntables: a ring of views generated from one image, and the strip / animation frames that show them."""
from PIL import Image

from datasets.camera import camera_vector
from datasets.images import to_pil


def describe_turn(turn_deg: float) -> str:
    """The turn in words: "the object turned 60 degrees clockwise seen from above" (positive = clockwise)."""
    way = "clockwise" if turn_deg >= 0 else "counter-clockwise"
    return f"the object turned {abs(turn_deg):g} degrees {way} seen from above"


def turn_angles(n_views, camera_dim, turn_deg):
    """Azimuth of each view in degrees: 360/N apart for a relative-camera model, its one turn apart otherwise."""
    step = 360.0 / n_views if camera_dim else turn_deg
    return [step * k for k in range(n_views)]


def describe_turntable(n_views, camera_dim, turn_deg) -> str:
    """What a turntable of n_views does, in one line (and what happens past a full turn)."""
    angles = turn_angles(n_views, camera_dim, turn_deg)
    step = angles[1] - angles[0]
    text = (f"{n_views} views {abs(step):g} degrees apart, {'clockwise' if step >= 0 else 'counter-clockwise'} "
            f"seen from above (0 to {abs(angles[-1]):g} degrees)")
    full = next((k for k, a in enumerate(angles) if abs(a) >= 360 - 1e-6), None)
    if full is not None:
        text += f"; past a full turn from view {full} on, so views repeat angles"
    return text


def turntable_views(generate, cond, n_views, camera_dim, turn_deg):
    """N views [B,3,H,W] starting with `cond` itself.

    A relative-camera model is asked for every angle directly from the input (no drift); a fixed-turn model
    turns its own previous output again (by the turn of its training data), so view k has gone through k
    generations. `generate(cond, camera)` runs the sampler on a batch.
    """
    views = [cond]
    for angle in turn_angles(n_views, camera_dim, turn_deg)[1:]:
        if camera_dim:
            camera = camera_vector(angle).expand(cond.shape[0], -1)
            views.append(generate(cond, camera))
        else:
            views.append(generate(views[-1], None))
    return views


def display_frames(views, index, display_size):
    """The views of batch item `index` as PIL images enlarged (Lanczos) to display_size a side for viewing."""
    frames = [to_pil(v[index]) for v in views]
    side = max(display_size, frames[0].width)
    return [f.resize((side, side), Image.Resampling.LANCZOS) for f in frames]


def strip_image(frames):
    """Frames side by side, left to right in turning order."""
    strip = Image.new("RGB", (sum(f.width for f in frames), frames[0].height))
    x = 0
    for f in frames:
        strip.paste(f, (x, 0))
        x += f.width
    return strip
