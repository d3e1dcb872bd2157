"""Command line of the toolkit. Thin on purpose: every command parses options and calls one package function."""
import errno
import os
import sys

import click

from render.backend import BACKENDS   # a light module: no pyrender or OpenGL import
from render.repack import REPACK_DEFAULTS   # the repack defaults, declared once (imports PIL, not torch)
from render.views import RenderSettings   # the render defaults, declared once (imports numpy, not torch/pyrender)
from train import defaults as D             # every other default, declared once (imports nothing)

CONTEXT = {"help_option_names": ["-h", "--help"], "show_default": True, "max_content_width": 110}
PRESET_NAMES = ("tiny", "demo", "demo64", "small", "seed")   # model/presets.py's PRESETS (importing it would import torch)
USER_OSERRORS = (FileNotFoundError, NotADirectoryError, IsADirectoryError, FileExistsError, PermissionError)
# The machine's state rather than a bug: full disk, quota, read-only disk, file too big for the file system.
DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG)


class UserError(click.ClickException):
    """Bad input from the user: printed as one line, no traceback."""


def first_line(e):
    """The first line of an exception's message (its type name when it has none)."""
    if isinstance(e, OSError) and e.errno in DISK_ERRNOS and e.strerror:
        return f"{e.filename}: {e.strerror}" if e.filename else e.strerror
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def run(fn, **kwargs):
    """Call a package function; turn its input errors (and a full disk) into one-line CLI errors (DEBUG=1 shows the
    traceback). Other exceptions are bugs and keep their traceback."""
    try:
        return fn(**kwargs)
    except (ValueError, OSError) as e:
        if os.environ.get("DEBUG") or (isinstance(e, OSError) and not isinstance(e, USER_OSERRORS)
                                       and e.errno not in DISK_ERRNOS):
            raise
        raise UserError(first_line(e)) from None


def _version():
    """The project's version, from pyproject.toml (the project runs from its checkout, not from site-packages)."""
    import re
    text = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "pyproject.toml"), encoding="utf-8").read()
    return re.search(r'^version\s*=\s*"([^"]+)"', text, re.M).group(1)


@click.group(context_settings=CONTEXT)
@click.version_option(_version(), "--version", prog_name="dit-nvs", message="%(prog)s %(version)s")
def cli():
    """Render 3D assets into view pairs, train a stream-block DiT on them, and generate the turned view."""


# ---- render / shards (render/) ----------------------------------------------------------------------------

def _render_options(command):
    """Options shared by every `render` source."""
    options = [
        click.option("--out", required=True, type=click.Path(file_okay=False),
                     help="Output folder for shards (new, or one this command wrote before: reruns resume)."),
        click.option("--size", default=RenderSettings.size,
                     help="Image side in pixels (twice the model's size: training scales down)."),
        click.option("--pairs-per-object", default=RenderSettings.pairs_per_object, help="View pairs rendered per object."),
        click.option("--delta-azimuth", default=RenderSettings.delta_azimuth_deg,
                     help="Target azimuth minus source azimuth, degrees (positive: object turns clockwise seen "
                          "from above)."),
        click.option("--elevation-range", default=",".join(f"{v:g}" for v in RenderSettings.elevation_range),
                     help="LOW,HIGH source/target elevation in degrees."),
        click.option("--workers", type=int, default=None, help="Render processes [default: CPU cores]."),
        click.option("--seed", default=RenderSettings.seed, help="Seed of the views (and of the procedural objects)."),
        click.option("--shard-size", default=RenderSettings.shard_size,
                     help="Samples per shard (an object never spans two shards)."),
        click.option("--backend", default=RenderSettings.backend, type=click.Choice(BACKENDS),
                     help="OpenGL platform (auto: egl on NVIDIA, else osmesa)."),
        click.option("--timeout-s", default=RenderSettings.timeout_s,
                     help="Abandon an object still rendering after this long."),
        click.option("--rank", type=int, default=None,
                     help="This process's share [default: $SLURM_PROCID, $RANK or 0]."),
        click.option("--world-size", type=int, default=None,
                     help="Number of shares [default: $SLURM_NTASKS, $WORLD_SIZE or 1]."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@cli.group("render")
def render_group():
    """Render 3D objects into view-pair shards (webdataset tar), each pair turned by --delta-azimuth."""


@render_group.command("procedural")
@click.option("--count", default=200, help="Number of built-in objects.")
@click.option("--symmetric-share", default=RenderSettings.symmetric_share,
              help="Share of objects that are plain solids looking the same after the turn (bottles, cans, balls): "
                   "teaches a model that such objects turn into themselves.")
@_render_options
def render_procedural_command(**options):
    """Render built-in procedural objects (deterministic per seed and index)."""
    from render.commands import render_procedural
    run(render_procedural, **options)


@render_group.command("meshes")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@_render_options
def render_meshes_command(**options):
    """Render GLB/GLTF/OBJ/PLY/STL files, or every such file under folders (recursive)."""
    from render.commands import render_meshes
    run(render_meshes, **options)


@render_group.command("objaverse")
@click.option("--limit", type=int, default=None, help="Render at most this many objects [default: all selected].")
@click.option("--lvis-category", default=None, help="Only objects of this LVIS category, e.g. chair.")
@click.option("--uids-file", type=click.Path(dir_okay=False), default=None, help="Only these uids (one a line).")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
              help="Where downloads are kept [default: ~/.objaverse, the objaverse package's own].")
@click.option("--annotations/--no-annotations", default=True,
              help="Fetch metadata to record each object's name and license in its samples.")
@_render_options
def render_objaverse_command(**options):
    """Download Objaverse objects through the objaverse package and render them."""
    from render.objaverse_source import render_objaverse
    run(render_objaverse, **options)


@cli.group("shards")
def shards_group():
    """Look at shard folders."""


@shards_group.command("info")
@click.argument("directory", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
def shards_info_command(**options):
    """Count objects, samples, shards, bytes and failures in a shard folder."""
    from render.inspect_shards import shards_info
    run(shards_info, **options)


@shards_group.command("preview")
@click.argument("directory", type=click.Path())
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="PNG file to write.")
@click.option("--count", default=16, help="Number of pairs to show.")
@click.option("--shuffle", is_flag=True, help="Draw the pairs at random from the whole set, not the first ones.")
@click.option("--seed", default=0, help="Seed of the --shuffle draw.")
def shards_preview_command(**options):
    """Draw labelled source|target pairs of a shard folder in a grid PNG (128 px per image)."""
    from render.inspect_shards import shards_preview
    run(shards_preview, **options)


# ---- repack (render/repack.py) ----------------------------------------------------------------------------

def _repack_options(command):
    """Options shared by every `repack` source."""
    options = [
        click.option("--out", required=True, type=click.Path(file_okay=False),
                     help="Output folder for shards (new, or one this command wrote before: reruns resume)."),
        click.option("--size", default=REPACK_DEFAULTS["size"],
                     help="Image side in pixels (aspect kept, padded on white)."),
        click.option("--workers", type=int, default=None, help="Decoding processes [default: CPU cores]."),
        click.option("--shard-size", default=REPACK_DEFAULTS["shard_size"], help="Samples per shard."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@cli.group("repack")
def repack_group():
    """Repack photo datasets (MVC, folders of view rings) into the same pair shards as render."""


@repack_group.command("mvc")
@click.argument("root", type=click.Path())
@click.option("--cond-view", default=REPACK_DEFAULTS["cond_view"],
              help="View used as the condition (MVC views: p, 1, 2, 3, 4, 5, 7).")
@click.option("--target-view", default=REPACK_DEFAULTS["target_view"],
              help="View used as the target (the original project paired 1 -> 3).")
@click.option("--metadata", type=click.Path(dir_okay=False), default=None,
              help="MVC metadata JSON (e.g. mvc_info.json): item attributes written into each sample's json.")
@click.option("--delta-deg", default=REPACK_DEFAULTS["delta_deg"],
              help="Nominal turn written as delta_azimuth_deg (MVC records no angles).")
@_repack_options
def repack_mvc_command(**options):
    """Pair each item's condition and target view from <styleId>-<view>-4x.jpg files under ROOT (recursive)."""
    from render.repack_mvc import repack_mvc
    run(repack_mvc, **options)


@repack_group.command("ring")
@click.argument("root", type=click.Path())
@click.option("--step-deg", default=REPACK_DEFAULTS["step_deg"], help="Azimuth step between consecutive images of a folder.")
@_repack_options
def repack_ring_command(**options):
    """Write every consecutive pair (last to first too) of each folder of views (000.png, 001.png, ...) under ROOT."""
    from render.repack_ring import repack_ring
    run(repack_ring, **options)


def shown(name: str) -> str:
    """`[default: X]` for a train option whose click default is None (None: "not given", so --resume keeps the run's)."""
    value = {**D.TRAIN_DEFAULTS, **D.DATA_DEFAULTS}[name]
    return f"[default: {'none' if value is None else value}]"


# ---- train / sample / evaluate (train/) -------------------------------------------------------------------

@cli.command("train")
@click.option("--data", multiple=True, help="Shards: folder of *.tar, glob, {a..b} pattern or http(s) URL; repeat to "
              "mix sources. Required for a new run; on --resume the run's own by default.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run folder (config, checkpoint, logs).")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its checkpoint (options not given keep "
              "the run's values).")
@click.option("--preset", default=None, type=click.Choice(PRESET_NAMES), help=f"Model size {shown('preset')}.")
@click.option("--steps", default=None, type=int, help=f"Stop at this step count {shown('steps')}.")
@click.option("--max-minutes", default=None, type=float, help=f"Also stop after this many minutes of this invocation {shown('max_minutes')}.")
@click.option("--batch-size", default=None, type=int, help=f"Global batch, split across torchrun processes {shown('batch_size')}.")
@click.option("--lr", default=None, type=float, help="AdamW peak learning rate [default: per preset, "
              + ", ".join(f"{k} {v:g}" for k, v in D.LR_BY_PRESET.items()) + "].")
@click.option("--warmup-steps", default=None, type=int, help=f"Linear learning-rate warm-up {shown('warmup_steps')}.")
@click.option("--weight-decay", default=None, type=float, help=f"AdamW weight decay {shown('weight_decay')}.")
@click.option("--grad-clip", default=None, type=float, help=f"Gradient norm clip {shown('grad_clip')}.")
@click.option("--high-noise-share", default=None, type=float, help="Share of each batch trained at the top tenth of "
              f"the noise levels, where few-step sampling leans on the network {shown('high_noise_share')}.")
@click.option("--ema-halflife", default=None, type=float, help=f"EMA half-life in samples {shown('ema_halflife')}.")
@click.option("--ema-rampup", default=None, type=float, help="EMA warm-up: the half-life is this times the samples "
              f"seen until that reaches --ema-halflife; 0 = no warm-up {shown('ema_rampup')}.")
@click.option("--precision", default=None, type=click.Choice(["auto", "fp32", "bf16"]),
              help=f"auto: bf16 only on CUDA or a CPU with AMX/AVX512-BF16 {shown('precision')}.")
@click.option("--compile/--no-compile", default=None, help="torch.compile the transformer blocks (about a minute of "
              f"warm-up, cached across runs) {shown('compile')[:-1]}: on for every preset but tiny].")
@click.option("--workers", default=None, type=int, help=f"Data loader processes per training process {shown('workers')}.")
@click.option("--seed", default=None, type=int, help=f"Seed of initialisation, noise and data order {shown('seed')}.")
@click.option("--background", default=None, help="Background for transparent pixels: white, black, grey or r,g,b "
              f"{shown('background')}.")
@click.option("--val-fraction", default=None, type=float, help=f"Objects held out for evaluate --split val {shown('val_fraction')}.")
@click.option("--init-from", default=None, help="Start a new run from the weights of a run folder, weights folder or "
              "URL: the same architecture, or a 32 px demo grown to demo64 (docs/train.md) "
              f"{shown('init_from')}.")
@click.option("--image-size", default=None, type=int, help="Override the preset's image size (a multiple of its patch).")
@click.option("--set", "overrides", multiple=True, metavar="NAME=VALUE",
              help="Override any model/diffusion field of the preset, e.g. --set depth=4 --set prediction=eps.")
@click.option("--log-every", default=None, type=int, help=f"Steps per log line {shown('log_every')}.")
@click.option("--ckpt-every", default=None, type=int, help=f"Steps between checkpoints {shown('ckpt_every')}.")
@click.option("--ckpt-minutes", default=None, type=float, help=f"Also checkpoint after this many minutes {shown('ckpt_minutes')}.")
@click.option("--sample-every", default=None, type=int, help=f"Steps between sample grids; 0 = at the end {shown('sample_every')}.")
@click.option("--device", default="auto", help="auto (CUDA if available), cpu, cuda (under torchrun: each process's "
              "local GPU), cuda:1, ...")
@click.option("--quiet", is_flag=True, help="No progress bar (for logs): only the start-up and summary lines.")
def train_command(data, quiet, **kwargs):
    """Train the DiT on view-pair shards (single process, or every process under torchrun)."""
    from train.loop import train   # imported here: torch takes seconds, --help should not
    run(train, data=list(data) or None, progress=not quiet, **kwargs)


CHECKPOINT_HELP = "Run folder (its EMA weights), weights folder, or http(s) URL of a published weights folder; default: weights/reference."
SAMPLER_OPTIONS = [
    click.option("--checkpoint", default=None, help=CHECKPOINT_HELP),
    click.option("--steps", default=D.DEFAULT_STEPS, type=int, help="Denoising steps."),
    click.option("--sampler", default=D.DEFAULT_SAMPLER, type=click.Choice(["ddim", "ancestral"]), help="Sampler."),
    click.option("--eta", default=D.DEFAULT_ETA, type=click.FloatRange(0, 1),
                 help="DDIM noise (0 = deterministic given the seed, 1 = the ancestral step's noise)."),
    click.option("--cfg-scale", default=D.DEFAULT_CFG, type=click.FloatRange(min=0),
                 help="Classifier-free guidance scale (1 = no guidance, 0 = unconditional)."),
    click.option("--seed", default=D.DEFAULT_SEED, type=int, help="Seed of the sampling noise."),
    click.option("--batch-size", default=D.DEFAULT_BATCH_SIZE, type=int, help="Images denoised together per forward pass."),
    click.option("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:1, ..."),
    click.option("--cache-dir", default=None, type=click.Path(file_okay=False),
                 help="Cache for URL checkpoints (default $DIT_NVS_CACHE or ~/.cache/dit-nvs)."),
]


def sampler_options(fn):
    """Attach the options shared by sample and evaluate."""
    for option in reversed(SAMPLER_OPTIONS):
        fn = option(fn)
    return fn


@cli.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--num-samples", default=1, type=int, help="Samples per input image.")
@click.option("--turntable", default=0, type=int,
              help="Write N views (the input, then the model's turn again and again) as PNGs, a strip and a GIF; "
                   "the shipped model's 60 degrees go once round at N=6, larger N go round again; 0 = one turned view.")
@click.option("--mask", default=None, type=click.Path(dir_okay=False),
              help="Object mask for the one input (white = object) [default: its alpha, else separated from the "
                   "background].")
@click.option("--prep/--no-prep", default=True,
              help="Prepare photos like the training data (object cut out, cropped, framed, on the training "
                   "background); --no-prep only pads and resizes.")
@click.option("--display-size", default=D.DISPLAY_SIZE, type=int,
              help="Side of the Lanczos-enlarged display copy (NAME_256px.png) next to each output; 0 = none.")
@sampler_options
def sample(**kwargs):
    """Generate the turned view of INPUTS (image files or folders): the view of the object after the model's turn
    (the shipped model: the object turned 60 degrees clockwise seen from above), written next to the prepared input."""
    from train.sample import sample as sample_images   # imported here: torch takes seconds, --help should not
    run(sample_images, **kwargs)


@cli.command()
@click.option("--data", required=True, multiple=True,
              help="Shards: folder, glob, {a..b} pattern or URL; repeat to score several sources as one set.")
@click.option("--split", default=D.DEFAULT_SPLIT, type=click.Choice(["val", "all"]),
              help="val: the checkpoint's held-out objects; all: every pair of --data.")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="JSON report; the per-pair CSV and the PNG grid are written next to it.")
@click.option("--limit", default=None, type=int, help="Evaluate at most this many pairs (in shard order).")
@click.option("--mean-pairs", default=D.DEFAULT_MEAN_PAIRS, type=int, help="Training pairs averaged into the mean-image baseline.")
@click.option("--weights", default="ema", type=click.Choice(["ema", "raw"]),
              help="A run folder's EMA weights or its raw training weights.")
@sampler_options
def evaluate(**kwargs):
    """Score the checkpoint (PSNR, SSIM, mask IoU) against copy-the-input and mean-image baselines."""
    from train.evaluate import evaluate as evaluate_checkpoint
    run(evaluate_checkpoint, **kwargs)


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="New weights folder: model.safetensors (EMA), config.json, training.json, SHA256SUMS.")
def export(run_dir, out):
    """Write a run's EMA weights as a weights folder for `--checkpoint` (local, or published over http)."""
    from train.weights import export_weights
    click.echo(run(export_weights, run_dir=run_dir, out_dir=out))


@cli.command()
@click.option("--checkpoint", default=None, help=CHECKPOINT_HELP)
@click.option("--host", default=D.DEFAULT_HOST, help="Address to listen on (0.0.0.0 exposes the page to the network).")
@click.option("--port", default=D.DEFAULT_PORT, type=int, help="Port of the page.")
@click.option("--max-jobs", default=D.DEFAULT_MAX_JOBS, type=int, help="Jobs sampled at once; more wait in a queue (1-2 on a CPU).")
@click.option("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:1, ...")
@click.option("--cache-dir", default=None, type=click.Path(file_okay=False),
              help="Cache for URL checkpoints (default $DIT_NVS_CACHE or ~/.cache/dit-nvs).")
def serve(**kwargs):
    """A local web page for trying the model: upload an image, get its turned view or a turntable (needs .[serve])."""
    import importlib.util
    if importlib.util.find_spec("gradio") is None:
        raise UserError("serve needs the serve extra: pip install '.[serve]' (make setup installs it)")
    from train.serve import serve as serve_page
    run(serve_page, **kwargs)


if __name__ == "__main__":
    cli()
