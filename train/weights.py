"""Weights: resolve a --checkpoint (a run or weights folder, the shipped default, a published URL fetched once),
verify it against its SHA256SUMS, load it for inference, and export a run's EMA weights as a weights folder."""
import hashlib
import os
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import torch
from tqdm import tqdm

from model.diffusion import GaussianDiffusion
from model.dit import StreamDiT
from model.presets import configs_from_dict
from train.checkpoint import checkpoint_dir, load_weights
from train.config import read_config, write_json_atomic
from train.logs import training_summary

PROJECT_ROOT = Path(__file__).resolve().parents[1]
WEIGHTS_DIR = PROJECT_ROOT / "weights"
DEFAULT_WEIGHTS = "reference"
CACHE_ENV = "DIT_NVS_CACHE"
WEIGHT_FILES = ("config.json", "model.safetensors")   # what a published weights folder must hold
TIMEOUT_S = 60          # longest wait for any bytes at all
DEADLINE_S = 30 * 60    # longest a whole file may take: a server trickling bytes never trips the timeout above


def default_cache_dir():
    """Where downloaded checkpoints live: $DIT_NVS_CACHE, else ~/.cache/dit-nvs."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "dit-nvs")


def shipped_weights():
    """Folders under weights/ holding a model.safetensors, the preferred reference first."""
    found = sorted(p.parent for p in WEIGHTS_DIR.glob("*/model.safetensors"))
    return sorted(found, key=lambda p: p.name != DEFAULT_WEIGHTS)


def resolve_checkpoint(checkpoint=None, cache_dir=None):
    """Return a local folder for `checkpoint` (None = shipped weights, http(s) URL = downloaded once)."""
    if checkpoint is None:
        shipped = shipped_weights()
        if not shipped:
            raise FileNotFoundError(f"no shipped weights in {WEIGHTS_DIR}/*/model.safetensors: "
                                    "pass --checkpoint RUN_FOLDER|WEIGHTS_FOLDER|URL")
        return shipped[0]
    if str(checkpoint).startswith(("http://", "https://")):
        return fetch_weights(str(checkpoint), cache_dir)
    path = Path(checkpoint)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if not path.is_dir():
        raise NotADirectoryError(f"checkpoint must be a run folder or a weights folder: {path}")
    return path


def fetch_weights(url, cache_dir=None):
    """Download a published weights folder (config.json, model.safetensors, SHA256SUMS) once, checksum-checked."""
    base = url.rstrip("/") + "/"
    key = hashlib.sha256(base.encode()).hexdigest()[:16]
    target = Path(cache_dir or default_cache_dir()) / f"{Path(base.rstrip('/')).name or 'weights'}-{key}"
    if all((target / name).is_file() for name in WEIGHT_FILES + ("SHA256SUMS",)):
        return target                                   # complete: files only get their final names once checked
    target.mkdir(parents=True, exist_ok=True)
    sums_part = _download(base + "SHA256SUMS", target / "SHA256SUMS.part", quiet=True)
    try:
        try:
            sums = parse_sha256sums(sums_part.read_bytes().decode("utf-8"))
        except UnicodeDecodeError:
            raise ValueError(f"{base}SHA256SUMS is not a sha256sum listing (not text)") from None
        for name in WEIGHT_FILES:
            _fetch_checked(base, name, target, sums)
        sums_part.rename(target / "SHA256SUMS")   # last: marks the folder complete
    finally:
        sums_part.unlink(missing_ok=True)
    print(f"fetched {base} -> {target} (checksums match SHA256SUMS)", file=sys.stderr)
    return target


def _fetch_checked(base, name, target, sums):
    """Download base+name into target unless a copy with the listed checksum is there; refuse a mismatch."""
    if name not in sums:
        raise ValueError(f"{base}SHA256SUMS lists no checksum for {name}: refusing an unverifiable download")
    final = target / name
    if final.is_file() and sha256_file(final) == sums[name]:
        return                                      # left by an earlier, interrupted fetch of the same files
    part = _download(base + name, target / f"{name}.part")
    got = sha256_file(part)
    if got != sums[name]:
        part.unlink()
        raise ValueError(f"checksum mismatch for {base}{name}: expected {sums[name]}, got {got}; "
                         "the download was removed")
    part.replace(final)


def verify_folder(folder):
    """Check the files a weights folder's SHA256SUMS lists (a folder without one is not checked); a missing or changed
    file raises ValueError naming it."""
    folder = Path(folder)
    if not (folder / "SHA256SUMS").is_file():
        return
    try:
        sums = parse_sha256sums((folder / "SHA256SUMS").read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"{folder / 'SHA256SUMS'} is not a sha256sum listing") from None
    for name, expected in sums.items():
        path = folder / name
        if not path.is_file():
            raise ValueError(f"{path} is listed in SHA256SUMS but missing")
        if sha256_file(path) != expected:
            raise ValueError(f"{path} does not match its SHA256SUMS checksum: the file is corrupt or was changed")


def parse_sha256sums(text):
    """{file name: hex digest} from `sha256sum` output ("<hex>  <name>" or "<hex> *<name>" lines)."""
    sums = {}
    for line in text.splitlines():
        parts = line.strip().split(None, 1)
        if len(parts) == 2 and len(parts[0]) == 64:
            sums[parts[1].lstrip("*").strip()] = parts[0].lower()
    return sums


def sha256_file(path, chunk=1 << 20):
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _download(url, dest, quiet=False):
    """Stream `url` to `dest` with a progress bar, within TIMEOUT_S per read and DEADLINE_S in all; HTTP and
    network errors become one-line user errors."""
    deadline = time.monotonic() + DEADLINE_S
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response, open(dest, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"fetch {Path(dest).stem}",
                      disable=quiet, leave=False) as bar:
                while block := response.read1(1 << 16):   # whatever has arrived: the bar and the deadline see it
                    out.write(block)
                    bar.update(len(block))
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"not complete after {DEADLINE_S} s ({bar.n} bytes so far)")
    except urllib.error.HTTPError as e:
        Path(dest).unlink(missing_ok=True)
        raise FileNotFoundError(f"{url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        Path(dest).unlink(missing_ok=True)
        raise ValueError(f"cannot download {url}: {getattr(e, 'reason', e)}") from None
    return Path(dest)


def check_config(config: dict, path: str) -> None:
    """A config.json must hold model, diffusion and data sections (a weights folder's, or a run's)."""
    for section in ("model", "diffusion", "data"):
        if not isinstance(config.get(section), dict):
            raise ValueError(f"{path} has no {section!r} section: not a config this version wrote")


def build(config: dict, device="cpu"):
    """Network and diffusion described by a config dict ({"model": ..., "diffusion": ...})."""
    try:
        model_cfg, diffusion_cfg = configs_from_dict(config)
        net, diffusion = StreamDiT(model_cfg), GaussianDiffusion(diffusion_cfg)
    except (KeyError, TypeError) as e:
        raise ValueError(f"config.json does not describe a model this version can build: {e}") from e
    return net.to(device), diffusion


def load_for_inference(path: str, device="cpu", weights="ema"):
    """(net in eval mode, diffusion, config) from a run folder (its EMA weights, or the raw training weights with
    weights="raw") or a weights folder."""
    path = str(path)
    if weights not in ("ema", "raw"):
        raise ValueError(f"weights must be 'ema' or 'raw', got {weights!r}")
    if not os.path.isdir(path):
        raise FileNotFoundError(f"no such run or weights folder: {path}")
    ckpt = checkpoint_dir(path)
    if ckpt is not None:
        weights_file = os.path.join(ckpt, "ema.safetensors" if weights == "ema" else "model.safetensors")
    elif weights == "raw":
        raise ValueError(f"{path} is not a run folder: only a run's checkpoint keeps the raw training weights")
    elif os.path.isfile(os.path.join(path, "model.safetensors")):
        weights_file = os.path.join(path, "model.safetensors")
    else:
        raise FileNotFoundError(f"{path} holds no checkpoint: expected a run folder (config.json + checkpoint/) "
                                f"or a weights folder (model.safetensors + config.json)")
    config_path = os.path.join(path, "config.json")
    if not os.path.isfile(config_path):
        raise FileNotFoundError(f"{path} has weights but no config.json")
    verify_folder(path)   # a weights folder's SHA256SUMS, where it has one
    config = read_config(config_path)
    check_config(config, config_path)
    net, diffusion = build(config, device)
    load_weights(net, weights_file, device)
    return net.eval().requires_grad_(False), diffusion, config


def init_from(net, path: str, model_config: dict) -> None:
    """Start a new run from another's weights (fine-tuning): a run folder's EMA weights or a weights folder (local
    or URL). Their architecture must be the new run's, or the same with images and patches both k times larger
    (grown by grow_patches); fields a stored config carries beyond it (at values this version accepts) are ignored."""
    source, _, config = load_for_inference(resolve_checkpoint(path), device="cpu")
    old = config["model"]
    k = max(1, model_config["patch_size"] // old["patch_size"])
    grown = {**old, "image_size": k * old["image_size"], "patch_size": k * old["patch_size"]}
    differ = [f"{n} {old.get(n)} vs {v}" for n, v in model_config.items() if grown.get(n) != v]
    if differ:
        raise ValueError(f"--init-from {path} is another architecture than this run's: {'; '.join(differ)}")
    state = source.state_dict()
    net.load_state_dict(state if k == 1 else grow_patches(state, k, old["patch_size"], net.out_channels,
                                                         net.state_dict()))


def grow_patches(state: dict, k: int, patch: int, out_channels: int, fresh: dict) -> dict:
    """A model's weights for images and patches k times larger on the same token grid. Each new patch embeds its
    k x k block averages as the old one embedded its pixels, and each old output pixel fills a k x k block, so on
    block-constant images the grown model is the old one upsampled; every transformer weight carries over.
    The embeddings also take the fresh initialisation's detail within each block (zero on a constant block): without
    it no within-block detail reaches the tokens or the output's gradient, and training sits at that saddle."""
    state = dict(state)
    up = lambda w: w.repeat_interleave(k, 2).repeat_interleave(k, 3)
    for name in ("x_embed.weight", "cond_embed.weight"):          # [D, C, p, p] -> [D, C, kp, kp]
        block_mean = torch.nn.functional.avg_pool2d(fresh[name], k)
        state[name] = up(state[name]) / (k * k) + fresh[name] - up(block_mean)
    for name in ("final.linear.weight", "final.linear.bias"):     # rows ordered (row, col, channel) of the patch
        w = state[name]
        w = w.reshape(patch, patch, out_channels, *w.shape[1:])
        state[name] = w.repeat_interleave(k, 0).repeat_interleave(k, 1).reshape(-1, *w.shape[3:])
    return state


def export_weights(run_dir: str, out_dir: str) -> str:
    """Write a weights folder: model.safetensors (the EMA weights), config.json, training.json (a summary of the
    run's log) and SHA256SUMS (sha256sum format)."""
    ckpt = checkpoint_dir(run_dir)
    if ckpt is None:
        raise FileNotFoundError(f"{run_dir} holds no checkpoint to export")
    if os.path.exists(out_dir) and os.listdir(out_dir):
        raise FileExistsError(f"{out_dir} is not empty: choose another folder for the weights")
    config = read_config(os.path.join(run_dir, "config.json"))
    check_config(config, os.path.join(run_dir, "config.json"))
    state = torch.load(os.path.join(ckpt, "state.pt"), map_location="cpu", weights_only=False)
    exported = {"model": config["model"], "diffusion": config["diffusion"],
                "data": {k: v for k, v in config["data"].items() if k != "shards"},
                "train": dict(config["train"], step=state["step"], samples=state["samples"])}
    summary = training_summary(run_dir)   # read before the temporary folder exists: nothing to clean if it fails
    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".weights-", dir=parent)
    try:
        os.chmod(tmp, 0o755)
        shutil.copyfile(os.path.join(ckpt, "ema.safetensors"), os.path.join(tmp, "model.safetensors"))
        write_json_atomic(os.path.join(tmp, "config.json"), exported)
        write_json_atomic(os.path.join(tmp, "training.json"), summary)
        names = ("model.safetensors", "config.json", "training.json")
        sums = "".join(f"{sha256_file(os.path.join(tmp, n))}  {n}\n" for n in names)
        with open(os.path.join(tmp, "SHA256SUMS"), "w") as f:
            f.write(sums)
        if os.path.isdir(out_dir):
            os.rmdir(out_dir)  # empty, checked above
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir
