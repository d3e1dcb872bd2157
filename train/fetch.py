"""Resolve a --checkpoint argument: a local run/weights folder, the shipped default, or a published URL (cached)."""
import hashlib
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

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
