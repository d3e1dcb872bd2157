"""Tests of the diffusion process against closed forms: schedules, noising, posterior, KL, likelihood, respacing, loss."""

import math

import pytest
import torch

from model.diffusion import (DiffusionConfig, GaussianDiffusion, discretized_gaussian_log_likelihood, make_betas,
                             normal_kl)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_diffusion_schedules(schedule):
    betas = make_betas(DiffusionConfig(schedule=schedule))
    assert betas.shape == (1000,) and (betas > 0).all() and (betas < 1).all()
    abar = torch.cumprod(1 - betas, 0)
    assert (abar[1:] < abar[:-1]).all() and abar[-1] < 1e-4
    if schedule == "linear":  # the original's betas
        assert math.isclose(betas[0].item(), 1e-4) and math.isclose(betas[-1].item(), 0.02)
    with pytest.raises(ValueError):
        make_betas(DiffusionConfig(schedule="quadratic"))


def test_diffusion_q_sample_statistics():
    diff = GaussianDiffusion(DiffusionConfig())
    torch.manual_seed(0)
    x0 = torch.full((20000, 1, 1, 1), 0.7)
    for step in (0, 250, 999):
        t = torch.full((20000,), step)
        x_t = diff.q_sample(x0, t)
        abar = diff.schedule.abar[step].item()
        assert abs(x_t.mean().item() - math.sqrt(abar) * 0.7) < 0.03
        assert abs(x_t.var().item() - (1 - abar)) < 0.05 * (1 - abar) + 1e-6


def test_diffusion_posterior_matches_the_product_of_gaussians():
    # q(x_{t-1} | x_t, x0) is proportional to q(x_t | x_{t-1}) q(x_{t-1} | x0): combine precisions directly.
    diff = GaussianDiffusion(DiffusionConfig(schedule="cosine"))
    s = diff.schedule
    x0, x_t = torch.randn(4, 3, 2, 2), torch.randn(4, 3, 2, 2)
    t = torch.tensor([1, 10, 500, 999])
    mean, var, logvar = diff.q_posterior(x0, x_t, t)
    beta, alpha = s.betas[t].view(-1, 1, 1, 1), (1 - s.betas[t]).view(-1, 1, 1, 1)
    abar_prev = s.abar[t - 1].view(-1, 1, 1, 1)
    precision = alpha / beta + 1 / (1 - abar_prev)
    direct_mean = (alpha.sqrt() * x_t.double() / beta + abar_prev.sqrt() * x0.double() / (1 - abar_prev)) / precision
    assert torch.allclose(mean.double(), direct_mean, atol=1e-5)
    assert torch.allclose(var.double(), (1 / precision).expand_as(var), rtol=1e-5)
    assert torch.allclose(logvar.double(), var.double().log(), rtol=1e-5)


def test_diffusion_kl_of_equal_gaussians_is_zero_and_matches_torch_distributions():
    m, lv = torch.randn(100), torch.randn(100)
    assert torch.allclose(normal_kl(m, lv, m, lv), torch.zeros(100), atol=1e-6)
    m2, lv2 = torch.randn(100), torch.randn(100)
    p, q = torch.distributions.Normal(m, (0.5 * lv).exp()), torch.distributions.Normal(m2, (0.5 * lv2).exp())
    assert torch.allclose(normal_kl(m, lv, m2, lv2), torch.distributions.kl_divergence(p, q), rtol=1e-4, atol=1e-5)


def test_diffusion_decoder_likelihood_integrates_the_gaussian_over_pixel_bins():
    levels = torch.linspace(-1, 1, 256)
    mean, log_scale = torch.full((256,), 0.1), torch.full((256,), math.log(0.3))
    logp = discretized_gaussian_log_likelihood(levels, mean, log_scale)
    assert abs(logp.exp().sum().item() - 1) < 1e-4  # the bins tile the real line
    normal = torch.distributions.Normal(0.1, 0.3)
    idx = int(torch.argmin((levels - 0.5).abs()))
    expected = normal.cdf(levels[idx] + 1 / 255) - normal.cdf(levels[idx] - 1 / 255)
    assert math.isclose(logp[idx].exp().item(), expected.item(), rel_tol=1e-3)
    assert math.isclose(logp[0].exp().item(), normal.cdf(torch.tensor(-1 + 1 / 255)).item(), rel_tol=1e-3)


@pytest.mark.parametrize("steps", [1, 7, 50, 1000])
def test_diffusion_respaced_schedule_keeps_cumulative_alphas_of_kept_steps(steps):
    diff = GaussianDiffusion(DiffusionConfig(schedule="linear"))
    s = diff.respaced(steps)
    assert len(s) == steps and s.timesteps[-1] == 999 and len(set(s.timesteps.tolist())) == steps
    assert torch.allclose(s.abar, diff.schedule.abar[s.timesteps], rtol=1e-12)
    if steps == 1000:
        assert torch.allclose(s.betas, diff.schedule.betas)
    with pytest.raises(ValueError):
        diff.respaced(0)


@pytest.mark.parametrize("prediction", ["eps", "v", "edm"])
def test_diffusion_prediction_target_converts_back_to_x0_and_eps(prediction):
    diff = GaussianDiffusion(DiffusionConfig(prediction=prediction))
    x0, noise = torch.rand(3, 3, 4, 4) * 2 - 1, torch.randn(3, 3, 4, 4)
    t = torch.tensor([0, 400, 999])
    x_t = diff.q_sample(x0, t, noise)
    a = diff.schedule.sqrt_abar[t].float().view(-1, 1, 1, 1)
    b = diff.schedule.sqrt_one_minus_abar[t].float().view(-1, 1, 1, 1)
    var = a ** 2 * 0.25 + b ** 2  # EDM's skip and output scales at sigma_data 0.5, written out
    edm = (x0 - a * 0.25 / var * x_t) / (b * 0.5 / var.sqrt())
    target = {"eps": noise, "v": a * noise - b * x0, "edm": edm}[prediction]
    assert torch.allclose(diff.prediction_target(x0, noise, x_t, t), target, atol=1e-5)
    out = torch.cat([target, torch.zeros_like(target)], dim=1)
    _, _, pred_x0, pred_eps = diff.p_mean_variance(out, x_t, t, clip=False)
    assert torch.allclose(pred_x0, x0, atol=2e-3)
    assert torch.allclose(pred_eps[1:], noise[1:], atol=1e-3)  # eps is ill-conditioned at t=0 only


def test_diffusion_edm_preconditioning_scales_inputs_to_unit_variance_and_is_v_at_sigma_data_one():
    diff = GaussianDiffusion(DiffusionConfig(prediction="edm", sigma_data=0.5, schedule="cosine"))
    x0 = torch.randn(4, 3, 32, 32) * 0.5  # data of std sigma_data
    t = torch.tensor([0, 300, 700, 999])
    x_in = diff.network_input(diff.q_sample(x0, t), t)
    assert torch.allclose(x_in.std(dim=(1, 2, 3)), torch.ones(4), atol=0.05)
    # At sigma_data = 1 the network sees x_t unchanged and its output is minus the v target.
    edm1 = GaussianDiffusion(DiffusionConfig(prediction="edm", sigma_data=1.0, schedule="cosine"))
    v = GaussianDiffusion(DiffusionConfig(prediction="v", schedule="cosine"))
    noise = torch.randn_like(x0)
    x_t = v.q_sample(x0, t, noise)
    assert torch.allclose(edm1.network_input(x_t, t), x_t)
    assert torch.allclose(edm1.prediction_target(x0, noise, x_t, t), -v.prediction_target(x0, noise, x_t, t), atol=1e-3)


class ConstantNet(torch.nn.Module):
    """Stands in for the DiT: outputs one learnable image whatever its inputs."""

    def __init__(self, out):
        super().__init__()
        self.out = torch.nn.Parameter(out)

    def forward(self, x_t, t, cond, camera=None, drop_cond=None):
        return self.out.expand(x_t.shape[0], -1, -1, -1)


def test_diffusion_hybrid_loss_trains_the_variance_only_through_the_bound():
    diff = GaussianDiffusion(DiffusionConfig(prediction="v", schedule="cosine"))
    net = ConstantNet(torch.randn(1, 6, 4, 4) * 0.1)
    x0 = torch.rand(4, 3, 4, 4) * 2 - 1
    t = torch.tensor([0, 10, 500, 900])
    terms = diff.training_losses(net, x0, x0, t=t)
    assert set(terms) >= {"loss", "mse", "vb", "t"} and terms["loss"].shape == (4,)
    assert torch.allclose(terms["loss"], terms["mse"] + terms["vb"], atol=1e-6)
    # Full loss gradient versus the gradient of the weighted MSE alone, recomputed here with the same noise.
    torch.manual_seed(0)
    diff.training_losses(net, x0, x0, t=t)["loss"].sum().backward()
    full, net.out.grad = net.out.grad.clone(), None
    torch.manual_seed(0)
    noise = torch.randn_like(x0)
    a = diff.schedule.sqrt_abar[t].float().view(-1, 1, 1, 1)
    b = diff.schedule.sqrt_one_minus_abar[t].float().view(-1, 1, 1, 1)
    mse = ((net.out[:, :3] - (a * noise - b * x0)) ** 2).mean(dim=(1, 2, 3))
    mse.sum().backward()
    assert torch.allclose(full[:, :3], net.out.grad[:, :3], atol=1e-6)  # the bound does not move the mean
    assert full[:, 3:].abs().max() > 0  # but it trains the variance


def test_diffusion_loss_quartiles_average_per_quarter_of_the_step_range():
    diff = GaussianDiffusion(DiffusionConfig())
    terms = {"loss": torch.tensor([1.0, 3.0, 5.0, 7.0]), "mse": torch.tensor([1.0, 1.0, 2.0, 2.0]),
             "vb": torch.zeros(4), "t": torch.tensor([0, 249, 600, 999])}
    logs = diff.loss_quartiles(terms)
    assert logs == {"loss_q0": 2.0, "mse_q0": 1.0, "vb_q0": 0.0, "loss_q2": 5.0, "mse_q2": 2.0, "vb_q2": 0.0,
                    "loss_q3": 7.0, "mse_q3": 2.0, "vb_q3": 0.0}


@pytest.mark.parametrize("share", [0.0, 0.25, 0.5])
def test_diffusion_timesteps_put_the_asked_share_of_the_batch_in_the_top_tenth(share):
    diff = GaussianDiffusion(DiffusionConfig())
    torch.manual_seed(0)
    t = diff.sample_timesteps(4000, "cpu", share)
    assert t.min() >= 0 and t.max() < 1000
    top = (t >= 900).float().mean().item()
    # uniform draws put a tenth of the rest there too
    assert abs(top - (share + 0.1 * (1 - share))) < 0.02
