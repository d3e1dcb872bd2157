"""Tests of the samplers: oracle recovery, seeded determinism, classifier-free guidance, progress reporting."""

import pytest
import torch

from model.diffusion import DiffusionConfig, GaussianDiffusion
from datasets.camera import camera_vector
from model.dit import StreamDiT
from model.presets import get_preset


class OracleNet(torch.nn.Module):
    """Knows the single data point x0 and predicts exactly what the diffusion asks for at the network step t."""

    def __init__(self, x0, diffusion: GaussianDiffusion):
        super().__init__()
        self.x0, self.diffusion = x0, diffusion

    def encode_cond(self, cond, camera=None, drop_cond=None):
        return cond

    def denoise(self, x_in, t, state):
        s = self.diffusion.schedule
        a, b = s.at("sqrt_abar", t, x_in), s.at("sqrt_one_minus_abar", t, x_in)
        if self.diffusion.config.prediction == "edm":  # undo the input scaling and write EDM's F out (sigma_data 0.5)
            var = a ** 2 * 0.25 + b ** 2
            x_t = x_in * var.sqrt()
            F = (self.x0 - a * 0.25 / var * x_t) / (b * 0.5 / var.sqrt())
            return torch.cat([F, torch.zeros_like(F)], dim=1)
        x_t = x_in
        eps = (x_t - a * self.x0) / b
        pred = {"eps": eps, "v": a * eps - b * self.x0}[self.diffusion.config.prediction]
        return torch.cat([pred, torch.zeros_like(pred)], dim=1)  # variance channels: mid-range


class GaussianOracle(torch.nn.Module):
    """The exact denoiser for data drawn per pixel from N(mu, sigma^2): E[x0 | x_t] is linear in x_t."""

    def __init__(self, mu, sigma, diffusion: GaussianDiffusion):
        super().__init__()
        self.mu, self.sigma, self.diffusion, self.steps_seen = mu, sigma, diffusion, []

    def encode_cond(self, cond, camera=None, drop_cond=None):
        return cond

    def denoise(self, x_t, t, state):
        self.steps_seen.append(int(t[0]))
        s = self.diffusion.schedule
        a, b = s.at("sqrt_abar", t, x_t), s.at("sqrt_one_minus_abar", t, x_t)
        x0 = self.mu + a * self.sigma ** 2 / (a ** 2 * self.sigma ** 2 + b ** 2) * (x_t - a * self.mu)
        eps = (x_t - a * x0) / b
        pred = {"eps": eps, "v": a * eps - b * x0}[self.diffusion.config.prediction]
        return torch.cat([pred, torch.zeros_like(pred)], dim=1)


def randomised_tiny(camera_dim=0):
    model_cfg, diff_cfg = get_preset("tiny", camera_dim=camera_dim)
    torch.manual_seed(0)
    net = StreamDiT(model_cfg).eval()
    with torch.no_grad():  # trained-looking weights instead of the zero init, so outputs depend on the inputs
        for p in net.parameters():
            if p.abs().max() == 0:
                p.normal_(0, 0.05)
    return net, GaussianDiffusion(diff_cfg)


def conditions(B=2, size=32, seed=1):
    return torch.rand(B, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize("sampler", ["ddim", "ancestral"])
@pytest.mark.parametrize("prediction", ["eps", "v", "edm"])
def test_diffusion_samplers_recover_the_data_point_with_an_oracle_denoiser(sampler, prediction):
    diff = GaussianDiffusion(DiffusionConfig(prediction=prediction, schedule="linear"))
    x0 = torch.rand(1, 3, 8, 8) * 1.6 - 0.8
    net = OracleNet(x0, diff)
    out = diff.sample(net, torch.zeros(3, 3, 8, 8), steps=10, sampler=sampler, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(out, x0.expand_as(out), atol=1e-3)


@pytest.mark.parametrize("sampler,eta,prediction", [("ddim", 0.0, "eps"), ("ancestral", 0.0, "v"), ("ddim", 1.0, "v")])
def test_diffusion_respaced_samplers_reproduce_gaussian_data_with_its_exact_denoiser(sampler, eta, prediction):
    diff = GaussianDiffusion(DiffusionConfig(prediction=prediction, schedule="linear"))
    net = GaussianOracle(0.3, 0.2, diff)
    out = diff.sample(net, torch.zeros(4000, 1, 1, 1), steps=250, sampler=sampler, eta=eta,
                      generator=torch.Generator().manual_seed(0))
    assert abs(out.mean().item() - 0.3) < 0.01 and abs(out.std().item() - 0.2) < 0.016
    assert net.steps_seen == diff.respaced(250).timesteps.flip(0).tolist()  # the network sees original steps
    assert net.steps_seen[0] == 999 and net.steps_seen[-1] == 0


def test_diffusion_ddim_eta0_is_deterministic_and_draws_only_the_starting_noise():
    net, diff = randomised_tiny()
    cond = conditions()
    g = torch.Generator().manual_seed(0)
    first = diff.sample(net, cond, steps=5, sampler="ddim", eta=0.0, generator=g)
    state_after = g.get_state()
    expected = torch.Generator().manual_seed(0)
    torch.randn(cond.shape, generator=expected)
    assert torch.equal(state_after, expected.get_state())
    assert torch.equal(first, diff.sample(net, cond, steps=5, eta=0.0, generator=torch.Generator().manual_seed(0)))
    assert not torch.equal(first, diff.sample(net, cond, steps=5, eta=0.0, generator=torch.Generator().manual_seed(1)))


@pytest.mark.parametrize("sampler,eta", [("ancestral", 0.0), ("ddim", 1.0)])
def test_diffusion_stochastic_samplers_repeat_under_the_same_seed(sampler, eta):
    net, diff = randomised_tiny()
    cond = conditions()

    def run(seed):
        return diff.sample(net, cond, steps=4, sampler=sampler, eta=eta, generator=torch.Generator().manual_seed(seed))
    a, b, c = run(3), run(3), run(4)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == cond.shape and a.abs().max() <= 1


def test_diffusion_guidance_scale_one_equals_the_conditional_prediction():
    net, diff = randomised_tiny()
    cond, x_t, t = conditions(), torch.randn(2, 3, 32, 32), torch.tensor([10, 700])
    state = diff.encode_condition(net, cond, cfg_scale=1.0)
    expected = net(x_t, t, cond, drop_cond=torch.zeros(2, dtype=torch.bool))
    assert torch.equal(diff.guided_output(net, x_t, t, state, cfg_scale=1.0), expected)


def test_diffusion_guidance_mixes_conditional_and_null_predictions_in_one_batch():
    net, diff = randomised_tiny(camera_dim=4)
    cond, x_t, t = conditions(), torch.randn(2, 3, 32, 32), torch.tensor([10, 700])
    camera = camera_vector([60.0, 90.0])
    state = diff.encode_condition(net, cond, camera=camera, cfg_scale=3.0)
    out = diff.guided_output(net, x_t, t, state, cfg_scale=3.0)
    with_cond = net(x_t, t, cond, camera=camera, drop_cond=torch.zeros(2, dtype=torch.bool))
    null = net(x_t, t, cond, camera=camera, drop_cond=torch.ones(2, dtype=torch.bool))
    assert torch.allclose(out[:, :3], null[:, :3] + 3.0 * (with_cond[:, :3] - null[:, :3]), atol=1e-5)
    assert torch.allclose(out[:, 3:], with_cond[:, 3:], atol=1e-6)
    assert not torch.allclose(out[:, :3], with_cond[:, :3], atol=1e-3)
    sample = diff.sample(net, cond, steps=3, cfg_scale=3.0, camera=camera, generator=torch.Generator().manual_seed(0))
    assert sample.shape == cond.shape


def test_diffusion_sample_reports_progress_and_validates_options():
    net, diff = randomised_tiny()
    calls = []
    diff.sample(net, conditions(B=1), steps=6, progress=lambda i, n: calls.append((i, n)))
    assert calls == [(i, 6) for i in range(1, 7)]
    with pytest.raises(ValueError, match="sampler"):
        diff.sample(net, conditions(B=1), steps=2, sampler="euler")
    with pytest.raises(ValueError, match="steps"):
        diff.sample(net, conditions(B=1), steps=1001)
