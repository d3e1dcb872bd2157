"""Run checkpoints: training state written atomically (model + EMA in safetensors, optimizer/step/RNG in state.pt) and
restored on resume. Weights folders (resolve, download, verify, load for inference, export) are train/weights.py."""
import errno
import os
import shutil
import tempfile

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model


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
