"""A tiny DiT with the diffusion's hybrid loss memorises a handful of pairs: the whole training path learns."""

import torch

from model.diffusion import GaussianDiffusion
from model.dit import StreamDiT
from model.presets import get_preset


def smooth_images(n, size, generator):
    """Random low-frequency colour images in [-1, 1], easier to memorise than white noise."""
    coarse = torch.rand(n, 3, 4, 4, generator=generator) * 2 - 1
    return torch.nn.functional.interpolate(coarse, size=size, mode="bilinear", align_corners=False)


def test_tiny_model_overfits_four_pairs():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small only loses from threads when the cores are shared
    try:
        torch.manual_seed(0)
        model_cfg, diff_cfg = get_preset("tiny", image_size=16, cond_dropout=0.0)
        net, diff = StreamDiT(model_cfg), GaussianDiffusion(diff_cfg)
        g = torch.Generator().manual_seed(0)
        cond, target = smooth_images(4, 16, g), smooth_images(4, 16, g)
        t_eval = torch.tensor([50, 250, 500, 750, 950]).repeat_interleave(4)

        def eval_mse():  # fixed steps and fixed noise, so before and after are comparable
            torch.manual_seed(123)
            with torch.no_grad():
                return diff.training_losses(net, target.repeat(5, 1, 1, 1), cond.repeat(5, 1, 1, 1), t=t_eval)[
                    "mse"].mean().item()

        before = eval_mse()
        opt = torch.optim.AdamW(net.parameters(), lr=5e-3, weight_decay=0.0)
        for _ in range(250):  # the shipped path (no direct condition path) needs ~200 steps for 4x
            loss = diff.training_losses(net, target.repeat(4, 1, 1, 1), cond.repeat(4, 1, 1, 1))["loss"].mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        after = eval_mse()
    finally:
        torch.set_num_threads(threads)
    print(f"tiny model, 4 pairs, 250 steps: v-prediction MSE {before:.3f} -> {after:.3f}")
    assert after < before / 4
