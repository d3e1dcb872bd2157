"""Training (loop, config, EMA, checkpoints, logs), sampling and evaluation of the view-synthesis DiT."""
