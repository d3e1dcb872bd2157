"""Every default of train, sample, evaluate and serve, declared once (no torch: cli.py reads these for --help)."""

# Train options and their defaults when neither the command line nor a stored run sets them.
TRAIN_DEFAULTS = {
    "preset": "tiny",
    "steps": 10000,
    "batch_size": 32,          # global: split across distributed ranks
    "lr": None,                # None: LR_BY_PRESET
    "weight_decay": 0.0,
    "warmup_steps": 500,
    "grad_clip": 1.0,
    "high_noise_share": 0.0,   # share of each batch trained at the top tenth of the noise levels (few-step sampling)
    "ema_halflife": 50000,     # samples
    "ema_rampup": 0.1,
    "precision": "auto",
    "compile": "auto",         # auto: compile the blocks for every preset but tiny (see train.loop.use_compile)
    "seed": 0,
    "workers": 2,
    "shuffle_buffer": 1000,
    "log_every": 50,
    "ckpt_every": 1000,        # steps
    "ckpt_minutes": 10.0,
    "sample_every": 1000,      # steps; 0 = only at the end
    "sample_steps": 10,        # DDIM steps of the periodic sample grids (cheap previews)
    "max_minutes": None,
    "init_from": None,         # a run or weights folder whose weights a new run starts from (fine-tuning)
}
DATA_DEFAULTS = {"background": "white", "val_fraction": 0.05}
# Learning rates that trained these sizes: the original's Adam rate for the seed size, the CPU prototype's for D <= 256.
LR_BY_PRESET = {"seed": 2.5e-4, "small": 5e-4, "demo": 1e-3, "demo64": 1e-3, "tiny": 1e-3}

# Sampling (sample, evaluate, serve, the demo and bench): the best of bench/sampler_grid.py on the reference model's
# held-out objects (docs/study.md). Two deterministic steps: the first is the network's prediction of the turned view
# from pure noise (the mean of what it could be), the second cleans it at the lowest noise level. Longer chains commit
# to detail the model does not have, which costs PSNR and mask IoU; guidance sharpens colours and costs PSNR.
DEFAULT_SAMPLER = "ddim"
DEFAULT_STEPS = 2
DEFAULT_ETA = 0.0          # DDIM noise (0 = deterministic given the seed)
DEFAULT_CFG = 1.0          # classifier-free guidance scale (1 = none)
DEFAULT_SEED = 0           # seed of the sampling noise
DEFAULT_BATCH_SIZE = 16    # images denoised together per forward pass
DISPLAY_SIZE = 256         # side of the display copy written next to every exact-size output (0 = none)

# evaluate
DEFAULT_SPLIT = "val"
DEFAULT_MEAN_PAIRS = 2000  # training pairs averaged into the mean-image baseline

# serve
DEFAULT_HOST, DEFAULT_PORT, DEFAULT_MAX_JOBS = "127.0.0.1", 7860, 1
