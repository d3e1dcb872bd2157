"""Deterministic train/validation split by object id, so no view of a validation object is ever trained on."""
import hashlib


def split_value(uid: str) -> float:
    """Map an object id to a number in [0, 1) that is the same in every process, run and machine (sha1, not hash())."""
    digest = hashlib.sha1(str(uid).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def is_val(uid: str, val_fraction: float) -> bool:
    """True when the object belongs to the validation split (about val_fraction of all objects)."""
    if not 0.0 <= val_fraction <= 1.0:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    return split_value(uid) < val_fraction


def in_split(uid: str, split: str, val_fraction: float) -> bool:
    """Whether an object belongs to split "train", "val" or "all"."""
    if split == "all":
        return True
    if split not in ("train", "val"):
        raise ValueError(f"unknown split {split!r}: use train, val or all")
    return is_val(uid, val_fraction) == (split == "val")
