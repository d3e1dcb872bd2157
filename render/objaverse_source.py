"""Objaverse objects through the objaverse package's own API, with a cache folder, a mirror URL and sturdy files."""
import contextlib
import difflib
import functools
import gzip
import io
import json
import os
import struct
import types
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

from render.commands import make_settings
from render.jobs import run_render_job
from render.views import ObjectSpec
from render.scene import load_mesh_file

HF_PREFIX = "https://huggingface.co/datasets/allenai/objaverse/resolve/main/"
BASE_URL_ENV = "OBJAVERSE_BASE_URL"   # a mirror (or a test server) serving the same files as HF_PREFIX
DEFAULT_CACHE = Path.home() / ".objaverse"
DOWNLOAD_TIMEOUT_S = 120
BROKEN_INDEX_ERRORS = (EOFError, zlib.error, gzip.BadGzipFile, json.JSONDecodeError, UnicodeDecodeError)


def _download(url, filename, base_url):
    """Stand-in for urllib's urlretrieve inside objaverse: mirror URL, a timeout, and a temp name + rename.

    The package writes its index files straight to their final names, so a killed download would leave a
    broken file that every later run treats as cached.
    """
    if url.startswith(HF_PREFIX):
        url = base_url.rstrip("/") + "/" + url[len(HF_PREFIX):]
    partial = f"{filename}.part{os.getpid()}"
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, open(partial, "wb") as f:
        while chunk := response.read(1 << 20):
            f.write(chunk)
    os.replace(partial, filename)
    return filename, None


def use_objaverse(cache_dir=None, base_url=None):
    """Import objaverse pointed at `cache_dir` and `base_url`; returns the module.

    The package has no setting for either: BASE_PATH is fixed at import but _VERSIONED_PATH is read at call
    time, and downloads go through the module's `urllib` name.
    """
    import objaverse
    cache = Path(cache_dir or DEFAULT_CACHE).expanduser()
    objaverse.BASE_PATH = str(cache)
    objaverse._VERSIONED_PATH = str(cache / "hf-objaverse-v1")
    base_url = base_url or os.environ.get(BASE_URL_ENV) or HF_PREFIX
    request = types.SimpleNamespace(urlretrieve=functools.partial(_download, base_url=base_url))
    objaverse.urllib = types.SimpleNamespace(request=request)
    # load_objects re-reads the whole object index (800k entries) on every call: read it once per process.
    if not hasattr(objaverse._load_object_paths, "cache_clear"):
        objaverse._load_object_paths = functools.lru_cache(maxsize=1)(objaverse._load_object_paths)
    objaverse._load_object_paths.cache_clear()
    return objaverse


def _index_files(objaverse):
    root = Path(objaverse._VERSIONED_PATH)
    return [root / "object-paths.json.gz", root / "lvis-annotations.json.gz", *root.glob("metadata/*.json.gz")]


def _remove_broken_index_files(objaverse):
    """Delete index files that do not decompress and parse (left by an interrupted download); return how many."""
    removed = 0
    for path in _index_files(objaverse):
        if not path.exists():
            continue
        try:
            with gzip.open(path, "rb") as f:
                json.load(f)
        except BROKEN_INDEX_ERRORS:
            path.unlink()
            removed += 1
    return removed


def _guarded(objaverse, fn, *args):
    """Call an objaverse function; if a cached index file is broken, delete it and call once more."""
    try:
        try:
            return fn(*args)
        except BROKEN_INDEX_ERRORS:
            if not _remove_broken_index_files(objaverse):
                raise
            objaverse._load_object_paths.cache_clear()
            return fn(*args)
    except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
        raise ValueError(f"objaverse download failed: {e}") from None


def glb_problem(path):
    """None when `path` is a complete glTF binary (magic, version 2, declared length), else what is wrong."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(12)
    if len(head) < 12 or head[:4] != b"glTF":
        return f"not a glTF binary (starts with {head[:8]!r})"
    version, length = struct.unpack("<II", head[4:12])
    if version != 2 or length != size:
        return f"broken glTF binary (version {version}, header says {length} bytes, file has {size})"
    return None


@dataclass
class ObjaverseLoader:
    """Picklable loader run in render workers: download one uid (once more if broken) and read it."""
    cache_dir: str | None = None
    base_url: str | None = None

    def __call__(self, uid):
        objaverse = use_objaverse(self.cache_dir, self.base_url)
        problem = None
        for _ in range(2):
            try:
                with contextlib.redirect_stdout(io.StringIO()):   # it prints a line per download
                    paths = _guarded(objaverse, objaverse.load_objects, [uid])
            except ValueError as e:
                problem = str(e)
                continue
            if uid not in paths:
                raise ValueError(f"{uid} is not in the Objaverse object index")
            problem = glb_problem(paths[uid])
            if problem is None:
                return load_mesh_file(paths[uid])
            problem = f"{paths[uid]}: {problem}"
            os.remove(paths[uid])   # otherwise the package treats the broken file as cached
        raise ValueError(f"download failed twice: {problem}")


def select_uids(objaverse, lvis_category=None, uids_file=None, limit=None):
    """The uids to render: from a file, an LVIS category, or the whole index; the first `limit` of them."""
    if uids_file is not None:
        lines = Path(uids_file).read_text().splitlines()
        uids = [line.strip().removesuffix(".glb") for line in lines if line.strip() and not line.startswith("#")]
        if not uids:
            raise ValueError(f"{uids_file} lists no uids")
    else:
        uids = None
    if lvis_category is not None:
        lvis = _guarded(objaverse, objaverse.load_lvis_annotations)
        if lvis_category not in lvis:
            close = difflib.get_close_matches(lvis_category, list(lvis), n=3)
            raise ValueError(f"unknown LVIS category {lvis_category!r}"
                             + (f"; did you mean {', '.join(close)}?" if close else ""))
        members = lvis[lvis_category]
        uids = members if uids is None else [u for u in uids if u in set(members)]
    if uids is None:
        uids = _guarded(objaverse, objaverse.load_uids)
    if limit is not None:
        if limit < 1:
            raise ValueError(f"--limit must be at least 1, got {limit}")
        uids = uids[:limit]
    return uids


def _annotations(objaverse, uids):
    """Name, author, license and page of each known uid: what attribution under CC licences needs."""
    known = set(_guarded(objaverse, objaverse.load_uids))
    with contextlib.redirect_stdout(io.StringIO()):
        metadata = _guarded(objaverse, objaverse.load_annotations, [u for u in uids if u in known])
    return {uid: {"name": m.get("name"), "author": (m.get("user") or {}).get("username"),
                  "license": m.get("license"), "url": m.get("viewerUrl")} for uid, m in metadata.items()}


def render_objaverse(out, limit=None, lvis_category=None, uids_file=None, cache_dir=None, annotations=True,
                     base_url=None, workers=None, rank=None, world_size=None, **options):
    """Render Objaverse objects (downloaded into `cache_dir` through the objaverse package) into shards in `out`."""
    settings = make_settings(**options)
    objaverse = use_objaverse(cache_dir, base_url)
    uids = select_uids(objaverse, lvis_category, uids_file, limit)
    meta = _annotations(objaverse, uids) if annotations else {}
    loader = ObjaverseLoader(str(cache_dir) if cache_dir else None, base_url)
    specs = [ObjectSpec(uid, "objaverse", loader, (uid,), meta=meta.get(uid, {})) for uid in uids]
    return run_render_job(specs, out, settings, "objaverse", workers, rank, world_size)
