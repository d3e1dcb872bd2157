"""Checkpoints written atomically (model + EMA in safetensors, optimizer/step/RNG in state.pt), inference loading, export."""
import errno
import os
import shutil
import tempfile

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model

from model.diffusion import GaussianDiffusion
from model.dit import StreamDiT
from model.presets import configs_from_dict
from train.config import read_config, write_json_atomic
from train.fetch import sha256_file, verify_folder
from train.logs import training_summary

CHECKPOINT = "checkpoint"
PREVIOUS = "checkpoint.old"  # the last complete checkpoint while a new one is being swapped in
# A checkpoint write that fails with less room than this left on its disk failed for want of room (torch.save says
# only "unexpected pos ..."; safetensors names the OS error).
LOW_DISK_BYTES = 16 * 2**20


def checkpoint_dir(run_dir: str):
    """The newest complete checkpoint folder of a run, or None (a crash mid-swap leaves only checkpoint.old)."""
    for name in (CHECKPOINT, PREVIOUS):
        path = os.path.join(run_dir, name)
        if os.path.isfile(os.path.join(path, "state.pt")):
            return path
    return None


def save_checkpoint(run_dir: str, net, ema_model, optimizer, state: dict) -> str:
    """Write model.safetensors, ema.safetensors and state.pt into a temporary folder, then swap it in by renames."""
    tmp = tempfile.mkdtemp(prefix=".checkpoint-", dir=run_dir)
    try:
        os.chmod(tmp, 0o755)  # mkdtemp's 0700 would hide the run from other users
        metadata = {"step": str(state.get("step", 0))}
        save_model(net, os.path.join(tmp, "model.safetensors"), metadata=metadata)
        save_model(ema_model, os.path.join(tmp, "ema.safetensors"), metadata=metadata)
        torch.save(dict(state, optimizer=optimizer.state_dict()), os.path.join(tmp, "state.pt"))
    except (OSError, RuntimeError, SafetensorError) as e:
        full = shutil.disk_usage(run_dir).free < LOW_DISK_BYTES   # before the removal below frees the space again
        shutil.rmtree(tmp, ignore_errors=True)
        if full or getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
            raise OSError(errno.ENOSPC, f"no space left on the disk of {run_dir} for a checkpoint "
                                        f"({str(e).strip() or type(e).__name__}); the previous checkpoint is kept: "
                                        "free some space, then continue with --resume") from e
        raise
    final, previous = os.path.join(run_dir, CHECKPOINT), os.path.join(run_dir, PREVIOUS)
    if os.path.isdir(final):
        shutil.rmtree(previous, ignore_errors=True)
        os.replace(final, previous)
    os.replace(tmp, final)
    shutil.rmtree(previous, ignore_errors=True)
    return final


def remove_stale_temporaries(run_dir: str) -> None:
    """Delete half-written checkpoint folders and config files left by a process killed while saving (first thing
    on resume: on a full disk they hold the room the resumed run needs)."""
    for name in os.listdir(run_dir):
        if name.startswith(".checkpoint-"):
            shutil.rmtree(os.path.join(run_dir, name), ignore_errors=True)
        elif name.startswith("config.json.tmp"):
            os.unlink(os.path.join(run_dir, name))


def load_checkpoint(run_dir: str, net, ema_model, optimizer, device="cpu"):
    """Restore weights, EMA and optimizer of a run in place; returns the rest of state.pt, or None without a checkpoint."""
    path = checkpoint_dir(run_dir)
    if path is None:
        return None
    load_weights(net, os.path.join(path, "model.safetensors"), device)
    load_weights(ema_model, os.path.join(path, "ema.safetensors"), device)
    state = torch.load(os.path.join(path, "state.pt"), map_location="cpu", weights_only=False)
    optimizer.load_state_dict(state.pop("optimizer"))
    return state


def load_weights(net, path: str, device="cpu") -> None:
    """Load a safetensors file into a network; a truncated, corrupt or mismatched file raises ValueError naming it."""
    try:
        load_model(net, path, device=str(device))
    except (SafetensorError, RuntimeError, OSError) as e:
        if isinstance(e, OSError) and not os.path.isfile(path):
            raise
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"cannot load weights {path}: {reason}") from e
    if not all(torch.isfinite(p).all() for p in net.state_dict().values() if p.is_floating_point()):
        raise ValueError(f"weights {path} hold NaN or inf values: the file is corrupt")


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
