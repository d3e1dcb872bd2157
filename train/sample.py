"""Generate the turned view (or a whole turntable) of any images with a trained checkpoint."""
import math
import os
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from PIL import Image

from datasets.camera import camera_vector
from datasets.images import load_image, to_pil, to_tensor
from datasets.photos import prepare_photo
from train.config import turn_deg
from train.defaults import (DEFAULT_BATCH_SIZE, DEFAULT_CFG, DEFAULT_ETA, DEFAULT_SAMPLER, DEFAULT_SEED,
                            DEFAULT_STEPS, DISPLAY_SIZE)
from train.turntable import describe_turn, describe_turntable, display_frames, strip_image, turntable_views
from train.weights import load_for_inference, resolve_checkpoint

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
GIF_FRAME_MS = 500


def list_inputs(inputs):
    """Image files from a list of files and folders (a folder contributes its image files, sorted)."""
    files = []
    for item in map(Path, inputs):
        if item.is_dir():
            files += sorted(p for p in item.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        elif item.exists():
            files.append(item)
        else:
            raise FileNotFoundError(f"input not found: {item}")
    if not files:
        raise ValueError(f"no images found in: {', '.join(map(str, inputs)) or '(no inputs given)'}")
    return files


def pick_device(name):
    """"auto" means CUDA when available, else CPU; cpu, cuda or cuda:N are checked against what this machine has."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ValueError(f"unknown --device {name!r}: use auto, cpu, cuda or cuda:N")
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (device.index or 0) >= count:
            raise ValueError(f"--device {name}: this machine has {count} CUDA GPU(s) that torch can use; "
                             "use --device cpu or auto")
    return name


def save_image(img, path, **save_kwargs):
    """Write an image under a temporary name and rename it, so a killed run leaves no half-written file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        img.save(tmp, format=path.suffix.lstrip(".").upper().replace("JPG", "JPEG"), **save_kwargs)
        os.replace(tmp, path)
    except BaseException as e:   # a full disk or a kill: no half-written temporary left behind
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and e.filename is None:   # PIL's write errors do not say which file
            raise OSError(e.errno, e.strerror or str(e), str(path)) from e
        raise


def display_path(path, display_size):
    """NAME.png -> NAME_256px.png: where the display copy of an output goes."""
    path = Path(path)
    return path.with_name(f"{path.stem}_{display_size}px{path.suffix}")


def save_output(img, path, display_size=DISPLAY_SIZE) -> list:
    """Write the exact-size image and, unless display_size is 0, a copy enlarged (Lanczos) to display_size a side
    next to it, for a person to look at; returns the paths written."""
    save_image(img, path)
    if not display_size:
        return [Path(path)]
    scale = display_size / max(img.size)
    copy = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.LANCZOS)
    save_image(copy, display_path(path, display_size))
    return [Path(path), display_path(path, display_size)]


def prepare_inputs(files, size, background, mask=None, prep=True):
    """Decode every input and prepare it like the training data (datasets.photos) unless prep is False; returns
    the model-size tensors [N,3,H,W] and one-line warnings naming their file."""
    if mask is not None and len(files) != 1:
        raise ValueError(f"--mask belongs to one input image, got {len(files)} inputs")
    tensors, warnings = [], []
    for f in files:
        img = load_image(f)
        if prep:
            img, info = prepare_photo(img, background, mask=mask)
            warnings += [f"warning: {f}: {w}" for w in info["warnings"]]
        tensors.append(to_tensor(img, size, background))
    return torch.stack(tensors), warnings


def make_generator(net, diffusion, *, steps, sampler, eta, cfg_scale, seed, batch_size, bar):
    """A `generate(cond, camera)` running the sampler over a batch in chunks of batch_size, ticking `bar`."""
    # One CPU generator drawn from in order: the same seed gives the same images on any device.
    rng = torch.Generator().manual_seed(seed)
    device = next(net.parameters()).device

    @torch.no_grad()
    def generate(cond, camera=None):
        outs = []
        for start in range(0, cond.shape[0], batch_size):
            chunk = cond[start:start + batch_size].to(device)
            cam = None if camera is None else camera[start:start + batch_size].to(device)
            outs.append(diffusion.sample(net, chunk, steps=steps, sampler=sampler, eta=eta, cfg_scale=cfg_scale,
                                         camera=cam, generator=rng, progress=lambda i, n: bar.update(1)).cpu())
        out = torch.cat(outs)
        if not torch.isfinite(out).all():   # would be written as black pixels and scored as a perfect match
            raise ValueError("the model produced non-finite values (NaN/inf): its weights or options are broken")
        return out

    return generate


def check_sampler_options(steps, eta, cfg_scale, batch_size):
    """Reject sampler settings that cannot work (sample and evaluate), with a one-line reason."""
    if steps < 1:
        raise ValueError("--steps must be at least 1")
    if not (math.isfinite(eta) and 0 <= eta <= 1):   # eta > 1 asks for more noise than the step has
        raise ValueError(f"--eta must be a number in [0, 1], got {eta}")
    if not (math.isfinite(cfg_scale) and cfg_scale >= 0):
        raise ValueError(f"--cfg-scale must be a finite number >= 0 (1 = no guidance), got {cfg_scale}")
    if batch_size < 1:
        raise ValueError("--batch-size must be at least 1")


def check_options(steps, num_samples, turntable, batch_size, eta=DEFAULT_ETA, cfg_scale=DEFAULT_CFG,
                  display_size=DISPLAY_SIZE):
    """Reject option values that cannot work, with a one-line reason."""
    check_sampler_options(steps, eta, cfg_scale, batch_size)
    if num_samples < 1:
        raise ValueError("--num-samples must be at least 1")
    if turntable == 1 or turntable < 0:
        raise ValueError("--turntable needs at least 2 views (0 = a single turned view)")
    if display_size < 0:
        raise ValueError("--display-size must be 0 (no display copies) or a positive number of pixels")


def unique_stems(files):
    """Output name stems, one per input, made unique when two inputs share a name (a/x.png, b/x.jpg)."""
    stems, seen = [], set()
    for f in files:
        stem, k = f.stem, 2
        while stem in seen:
            stem, k = f"{f.stem}-{k}", k + 1
        seen.add(stem)
        stems.append(stem)
    return stems


def planned_outputs(out, stems, num_samples, turntable, display_size=DISPLAY_SIZE):
    """Every file sample() writes for these input stems (the names write_turntable and the loop below use)."""
    paths = []
    for stem in stems:
        tags = [stem] if num_samples == 1 else [f"{stem}_s{j}" for j in range(num_samples)]
        if turntable:
            paths += [out / f"{tag}_{kind}" for tag in tags for kind in
                      [f"view{k:02d}.png" for k in range(turntable)] + ["turntable.png", "turntable.gif"]]
        else:
            paths += [out / f"{stem}_input.png"] + [out / f"{tag}_turned.png" for tag in tags]
    if display_size:   # every image but the strip and the GIF has a display copy
        paths += [display_path(p, display_size) for p in paths if not p.name.endswith(("_turntable.png", ".gif"))]
    return paths


def check_no_overwrite(files, outputs):
    """Refuse to write over an input (`sample out/x_turned.png --out out` would replace it with its own turn)."""
    inputs = {f.resolve(): f for f in files}
    for path in outputs:
        if path.resolve() in inputs:
            raise FileExistsError(f"{path} would be written over the input {inputs[path.resolve()]}: "
                                  "choose another --out")


def sample(checkpoint, inputs, out, steps=DEFAULT_STEPS, sampler=DEFAULT_SAMPLER, eta=DEFAULT_ETA, cfg_scale=DEFAULT_CFG,
           seed=DEFAULT_SEED, num_samples=1, turntable=0, device="auto", batch_size=DEFAULT_BATCH_SIZE, cache_dir=None,
           mask=None, prep=True, display_size=DISPLAY_SIZE):
    """Write the turned view(s) of every input image into `out`, each next to its prepared input; returns the paths.

    prep: prepare each photo like the training data (object mask from alpha, `mask` or separation; crop, square,
    training framing, training background); False only pads and resizes. display_size: side of the display copy
    written next to each exact-size output (0 = none)."""
    started = time.time()
    check_options(steps, num_samples, turntable, batch_size, eta, cfg_scale, display_size)
    files = list_inputs(inputs)
    check_no_overwrite(files, planned_outputs(Path(out), unique_stems(files), num_samples, turntable, display_size))
    path = resolve_checkpoint(checkpoint, cache_dir)
    net, diffusion, config = load_for_inference(path, device=pick_device(device))
    size, background = config["model"]["image_size"], config["data"].get("background", "white")
    camera_dim, turn = config["model"].get("camera_dim", 0), turn_deg(config)
    # Every input is decoded and prepared (at model size) before anything is written or sampled.
    conds, warnings = prepare_inputs(files, size, background, mask, prep)
    for line in warnings:
        print(line, file=sys.stderr)
    cond = conds.repeat_interleave(num_samples, dim=0)   # item i * num_samples + j = sample j of input i

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    passes = max(1, turntable - 1)
    sampling = time.time()
    with tqdm(total=math.ceil(len(cond) / batch_size) * steps * passes, desc="sample", unit="step") as bar:
        generate = make_generator(net, diffusion, steps=steps, sampler=sampler, eta=eta, cfg_scale=cfg_scale,
                                  seed=seed, batch_size=batch_size, bar=bar)
        if turntable:
            views = turntable_views(generate, cond, turntable, camera_dim, turn)
        else:   # a relative-camera model is asked for its data's turn, like a fixed-turn one
            turned = generate(cond, camera_vector(turn).expand(len(cond), -1) if camera_dim else None)
    sampling = time.time() - sampling

    written = []
    for i, stem in enumerate(unique_stems(files)):
        if not turntable:   # a turntable's view00 is the prepared input
            written += save_output(to_pil(conds[i]), out / f"{stem}_input.png", display_size)
        for j in range(num_samples):
            k = i * num_samples + j
            tag = stem if num_samples == 1 else f"{stem}_s{j}"
            if turntable:
                written += write_turntable(views, k, out, tag, display_size)
            else:
                written += save_output(to_pil(turned[k]), out / f"{tag}_turned.png", display_size)
    what = (f"turntables of {describe_turntable(turntable, camera_dim, turn)}" if turntable
            else f"turned views: {describe_turn(turn)}")
    print(f"sampled {len(files)} input(s) x {num_samples} sample(s) ({what}; {sampler} {steps} steps, "
          f"cfg {cfg_scale}) in {time.time() - started:.1f} s ({sampling:.1f} s sampling) -> {out}", file=sys.stderr)
    return written


def write_turntable(views, index, out, tag, display_size=DISPLAY_SIZE):
    """Write batch item `index` of a turntable: one PNG per view (and its display copy), a strip PNG and an
    animated GIF of display-size frames."""
    paths = []
    for k, view in enumerate(views):
        paths += save_output(to_pil(view[index]), out / f"{tag}_view{k:02d}.png", display_size)
    frames = display_frames(views, index, display_size)
    paths.append(out / f"{tag}_turntable.png")
    save_image(strip_image(frames), paths[-1])
    paths.append(out / f"{tag}_turntable.gif")
    save_image(frames[0], paths[-1], save_all=True, append_images=frames[1:], duration=GIF_FRAME_MS, loop=0)
    return paths
