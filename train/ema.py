"""Exponential moving average of the weights, with a half-life counted in training samples and a warm-up ramp."""
import copy

import torch


class EMA:
    """EMA copy of a network. Half-life in samples (not steps), so it means the same at any batch size or world size.

    Warm-up: while fewer than halflife/rampup samples have been seen, the half-life is rampup x samples seen, so early
    averages do not drag in the random initialisation (EDM's ramp, Karras et al. 2022).
    """

    def __init__(self, net: torch.nn.Module, halflife_samples: float, rampup: float = 0.1):
        self.model = copy.deepcopy(net).eval().requires_grad_(False)
        self.halflife_samples = float(halflife_samples)
        self.rampup = float(rampup)

    def decay(self, samples_seen: int, batch: int) -> float:
        """Fraction of the old average kept after a step of `batch` samples that brought the total to samples_seen."""
        halflife = self.halflife_samples
        if self.rampup > 0:
            halflife = min(halflife, self.rampup * samples_seen)
        return 0.5 ** (batch / max(halflife, 1e-8))

    @torch.no_grad()
    def update(self, net: torch.nn.Module, samples_seen: int, batch: int) -> float:
        """Move the average towards the current weights; returns the decay used."""
        beta = self.decay(samples_seen, batch)
        torch._foreach_lerp_(list(self.model.parameters()), [p.detach() for p in net.parameters()], 1.0 - beta)
        for e, b in zip(self.model.buffers(), net.buffers()):
            e.copy_(b)
        return beta
