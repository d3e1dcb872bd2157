"""The resolved run configuration: preset + options -> one JSON dict, saved as config.json in the run folder."""
import dataclasses
import json
import math
import os

from datasets.images import background_rgb
from datasets.stream import resolve_shards
from model.presets import get_preset
from train.defaults import DATA_DEFAULTS, LR_BY_PRESET, TRAIN_DEFAULTS

# These define the run: changing them on --resume would train a different model on different data.
FIXED_ON_RESUME = ("preset", "background", "val_fraction", "init_from")
PRECISIONS = ("auto", "fp32", "bf16")
# The turn of runs and weights that predate recording it: every shard then held 60-degree pairs.
DEFAULT_TURN_DEG = 60.0
TURN_PROBE_SHARDS = 32     # shards (spread over the list) whose first sample tells the data's turns


def read_config(path: str) -> dict:
    """Read a config.json (a file that is not a JSON object raises ValueError naming it)."""
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path} is not a JSON object")
    return config


def write_json_atomic(path: str, data: dict) -> None:
    """Write JSON under a temporary name and rename it, so readers never see half a file (nor a full disk a stale
    temporary)."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def parse_overrides(items) -> dict:
    """Turn ["depth=4", "schedule=linear"] into {"depth": 4, "schedule": "linear"} (values parsed as JSON if they can be)."""
    overrides = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"bad --set {item!r}: expected NAME=VALUE, e.g. depth=4")
        try:
            overrides[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key.strip()] = value
    return overrides


def _data_spec(data):
    """Store local shard paths as absolute paths (the run may be resumed from another directory)."""
    items = [data] if isinstance(data, str) else list(data)
    items = [i if "://" in i or i.startswith("pipe:") else os.path.abspath(i) for i in items]
    return items[0] if len(items) == 1 else items


def resolve(out: str, resume: bool, data=None, options: dict = None, model_overrides: dict = None) -> tuple:
    """The run's full configuration from the stored run (on resume), the given options and the defaults.

    Returns (config, stored) where stored is the previous config dict or None. Options set to None are not given.
    """
    options = {k: v for k, v in (options or {}).items() if v is not None}
    model_overrides = dict(model_overrides or {})
    path = os.path.join(out, "config.json")
    stored = read_config(path) if os.path.exists(path) else None
    has_checkpoint = any(os.path.isdir(os.path.join(out, n)) for n in ("checkpoint", "checkpoint.old"))
    if stored is not None and resume:
        return _resumed(stored, data, options, model_overrides), stored
    if data is None:
        raise ValueError("--data is required for a new run")
    config = json.loads(json.dumps(_fresh(data, options, model_overrides)))  # as it will read back from JSON
    # A folder whose run never reached a checkpoint may be reused by the same command; anything else is kept safe.
    if (stored is not None and (has_checkpoint or stored != config)) or (stored is None and has_checkpoint):
        raise FileExistsError(f"{out} already holds a run: pass --resume to continue it, or choose another --out")
    return config, None


def read_turns(spec) -> list:
    """The distinct delta_azimuth_deg of the shards (first sample of up to TURN_PROBE_SHARDS of them), sorted."""
    import itertools

    from datasets.stream import _raw_samples
    shards = resolve_shards(spec)
    probe = shards[::max(1, len(shards) // TURN_PROBE_SHARDS)][:TURN_PROBE_SHARDS]
    turns = set()
    for shard in probe:
        for _, meta in itertools.islice(_raw_samples([shard], "all", 0.0), 1):
            turns.add(float(meta.get("delta_azimuth_deg", DEFAULT_TURN_DEG)))
    return sorted(turns) or [DEFAULT_TURN_DEG]


def turn_deg(config: dict) -> float:
    """The turn (degrees, positive = clockwise seen from above) a fixed-turn model learned, from its config."""
    turns = config.get("data", {}).get("turns_deg") or [DEFAULT_TURN_DEG]
    return float(turns[0])


def _fresh(data, options: dict, model_overrides: dict) -> dict:
    """A new run's config: defaults, then the preset, then the options given."""
    train = dict(TRAIN_DEFAULTS)
    train.update({k: v for k, v in options.items() if k in TRAIN_DEFAULTS})
    if train["lr"] is None:
        train["lr"] = LR_BY_PRESET.get(train["preset"], 3e-4)
    data_cfg = dict(DATA_DEFAULTS, shards=_data_spec(data))
    data_cfg.update({k: v for k, v in options.items() if k in DATA_DEFAULTS})
    data_cfg["turns_deg"] = read_turns(data_cfg["shards"])  # the turn is the data's, recorded with the run
    model, diffusion = get_preset(train["preset"], **model_overrides)
    config = {"model": dataclasses.asdict(model), "diffusion": dataclasses.asdict(diffusion), "data": data_cfg,
              "train": train}
    validate(config)
    return config


def _resumed(stored: dict, data, options: dict, model_overrides: dict) -> dict:
    """A stored run's config with the options that may change on resume (steps, time, workers, lr...) updated."""
    config = json.loads(json.dumps(stored))  # deep copy
    for key, value in TRAIN_DEFAULTS.items():   # options added after the run started keep their old behaviour
        config["train"].setdefault(key, value)
    for key in FIXED_ON_RESUME:
        section = "train" if key in TRAIN_DEFAULTS else "data"
        if key in options and options[key] != config[section].get(key):
            raise ValueError(f"--{key.replace('_', '-')} {options[key]} differs from the run being resumed "
                             f"({config[section].get(key)}); use another --out for a different run")
    for key, value in model_overrides.items():
        stored_value = config["model"].get(key, config["diffusion"].get(key))
        if stored_value != value:
            raise ValueError(f"model option {key}={value} differs from the run being resumed ({stored_value})")
    config["train"].update({k: v for k, v in options.items() if k in TRAIN_DEFAULTS})
    if data is not None:
        config["data"]["shards"] = _data_spec(data)
    if data is not None or "turns_deg" not in config["data"]:   # runs from before the turn was recorded too
        config["data"]["turns_deg"] = read_turns(config["data"]["shards"])
    validate(config)
    return config


# Every numeric train option and the least value it may take: (name, integer?, minimum, minimum allowed?).
NUMERIC_OPTIONS = (("steps", True, 1, True), ("batch_size", True, 1, True), ("log_every", True, 1, True),
                   ("ckpt_every", True, 1, True), ("sample_every", True, 0, True), ("sample_steps", True, 1, True),
                   ("warmup_steps", True, 0, True), ("workers", True, 0, True), ("shuffle_buffer", True, 0, True),
                   ("seed", True, 0, True), ("lr", False, 0, False), ("grad_clip", False, 0, False),
                   ("weight_decay", False, 0, True), ("high_noise_share", False, 0, True),
                   ("ema_halflife", False, 0, True), ("ema_rampup", False, 0, True),
                   ("ckpt_minutes", False, 0, False), ("max_minutes", False, 0, False))


def check_number(name: str, value, integer: bool, least, inclusive: bool) -> None:
    """Refuse a non-number, NaN, inf, a fraction where an integer is due, or a value below its least."""
    flag = f"--{name.replace('_', '-')}"
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        raise ValueError(f"{flag} must be {'an integer' if integer else 'a number'}, got {value!r}")
    if not math.isfinite(value) or value < least or (value == least and not inclusive):
        raise ValueError(f"{flag} must be a finite number {'>=' if inclusive else '>'} {least}, got {value}")


def validate(config: dict) -> None:
    """Reject option values that would fail later, with a one-line reason."""
    t = config["train"]
    if t["precision"] not in PRECISIONS:
        raise ValueError(f"unknown precision {t['precision']!r}: use {', '.join(PRECISIONS)}")
    for name, integer, least, inclusive in NUMERIC_OPTIONS:
        if t.get(name) is not None or name != "max_minutes":   # max_minutes None = no time budget
            check_number(name, t.get(name), integer, least, inclusive)
    if t["high_noise_share"] >= 1:
        raise ValueError(f"--high-noise-share must be below 1, got {t['high_noise_share']}")
    if t["compile"] not in (True, False, "auto"):
        raise ValueError(f"compile must be true, false or auto, got {t['compile']!r}")
    init = t.get("init_from")
    if init is not None and not (str(init).startswith(("http://", "https://")) or os.path.isdir(init)):
        raise ValueError(f"--init-from {init}: no such run or weights folder")
    background_rgb(config["data"]["background"])
    resolve_shards(config["data"]["shards"])  # fail now, not after building the model
    if not isinstance(config["data"]["val_fraction"], (int, float)) or not 0 <= config["data"]["val_fraction"] < 1:
        raise ValueError(f"--val-fraction must be in [0, 1), got {config['data']['val_fraction']}")
    if config["model"]["learn_sigma"] != config["diffusion"]["learn_sigma"]:
        raise ValueError("model and diffusion disagree on learn_sigma")
