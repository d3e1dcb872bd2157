"""Gaussian diffusion: schedules, forward noising, learned-range variance, hybrid loss, respaced samplers, guidance."""

import math
from dataclasses import dataclass

import torch

PREDICTIONS = ("eps", "v", "edm")
SCHEDULES = ("linear", "cosine")


@dataclass
class DiffusionConfig:
    """Diffusion process and loss options; a plain dataclass so it round-trips through JSON."""

    num_steps: int = 1000
    schedule: str = "linear"      # "linear": betas 1e-4..0.02 at 1000 steps (the original) | "cosine" (Improved DDPM)
    prediction: str = "eps"       # what the first output channels predict: "eps" | "v" | "edm" (see below)
    learn_sigma: bool = True      # last output channels interpolate the log-variance between beta and beta-tilde
    # "edm": EDM's preconditioning (Karras et al. 2022) in variance-preserving form. The network sees c_in * x_t (unit
    # variance for data of RMS sigma_data) and predicts F with x0 = c_skip * x_t + c_out * F; plain MSE on F is EDM's
    # loss weighting. At sigma_data = 1 it is v-prediction (F = -v) without input scaling.
    sigma_data: float = 0.5


def make_betas(cfg: DiffusionConfig) -> torch.Tensor:
    """Beta sequence (float64) of the configured schedule."""
    T = cfg.num_steps
    if cfg.schedule == "linear":
        scale = 1000 / T  # keeps the 1000-step schedule's endpoints meaningful for other lengths
        return torch.linspace(scale * 1e-4, scale * 0.02, T, dtype=torch.float64)
    if cfg.schedule == "cosine":
        s = torch.arange(T + 1, dtype=torch.float64) / T
        abar = torch.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2
        return (1 - abar[1:] / abar[:-1]).clamp(max=0.999)
    raise ValueError(f"unknown schedule {cfg.schedule!r}; expected one of {SCHEDULES}")


class Schedule:
    """Quantities derived from one beta sequence, indexed by position; `timesteps` maps positions to network steps."""

    def __init__(self, betas: torch.Tensor, timesteps: torch.Tensor):
        self.betas = betas
        self.timesteps = timesteps
        alphas = 1 - betas
        self.abar = torch.cumprod(alphas, dim=0)
        self.abar_prev = torch.cat([torch.ones(1, dtype=betas.dtype), self.abar[:-1]])
        self.sqrt_abar = self.abar.sqrt()
        self.sqrt_one_minus_abar = (1 - self.abar).sqrt()
        self.post_var = betas * (1 - self.abar_prev) / (1 - self.abar)
        # The posterior variance is 0 at the first step; its log is clipped to the next value, as Improved DDPM does.
        # A one-step schedule has no next value: its only step is clipped to log beta (the step adds no noise anyway).
        clip = self.post_var[1:2] if len(betas) > 1 else betas[:1]
        self.post_logvar = torch.cat([clip, self.post_var[1:]]).log()
        self.post_coef_x0 = betas * self.abar_prev.sqrt() / (1 - self.abar)
        self.post_coef_xt = (1 - self.abar_prev) * alphas.sqrt() / (1 - self.abar)
        self.log_betas = betas.log()

    def __len__(self):
        return len(self.betas)

    def at(self, name: str, i: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Values of one schedule array at positions i [B], shaped [B, 1, 1, 1] to broadcast against `like`."""
        values = getattr(self, name)[i.long().cpu()]
        return values.to(device=like.device, dtype=torch.float32).view(-1, *([1] * (like.dim() - 1)))


def mean_flat(x: torch.Tensor) -> torch.Tensor:
    """Mean over all but the batch dimension."""
    return x.mean(dim=tuple(range(1, x.dim())))


def normal_kl(mean1, logvar1, mean2, logvar2) -> torch.Tensor:
    """Elementwise KL(N(mean1, exp logvar1) || N(mean2, exp logvar2)) in nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def discretized_gaussian_log_likelihood(x, mean, log_scale) -> torch.Tensor:
    """Elementwise log-probability (nats) of 8-bit data x in [-1, 1] under a Gaussian integrated over each pixel bin."""
    inv_std = torch.exp(-log_scale)
    upper = inv_std * (x - mean + 1 / 255)
    lower = inv_std * (x - mean - 1 / 255)
    log_cdf_upper = torch.special.log_ndtr(upper)
    log_sf_lower = torch.special.log_ndtr(-lower)
    log_bin = torch.log((torch.special.ndtr(upper) - torch.special.ndtr(lower)).clamp(min=1e-12))
    # The edge bins extend to infinity.
    return torch.where(x < -0.999, log_cdf_upper, torch.where(x > 0.999, log_sf_lower, log_bin))


class GaussianDiffusion:
    """The diffusion process around a StreamDiT: training losses and samplers."""

    def __init__(self, cfg: DiffusionConfig):
        if cfg.prediction not in PREDICTIONS:
            raise ValueError(f"unknown prediction {cfg.prediction!r}; expected one of {PREDICTIONS}")
        self.config = cfg
        self.num_steps = cfg.num_steps
        self.schedule = Schedule(make_betas(cfg), torch.arange(cfg.num_steps))

    # ---- forward process and posterior ----

    def q_sample(self, x0, t, noise=None) -> torch.Tensor:
        """Sample x_t ~ q(x_t | x0) = N(sqrt(abar_t) x0, (1 - abar_t) I)."""
        noise = torch.randn_like(x0) if noise is None else noise
        s = self.schedule
        return s.at("sqrt_abar", t, x0) * x0 + s.at("sqrt_one_minus_abar", t, x0) * noise

    def q_posterior(self, x0, x_t, i, schedule: Schedule | None = None):
        """Mean, variance and clipped log-variance of q(x_{t-1} | x_t, x0) at positions i of a schedule."""
        s = schedule or self.schedule
        mean = s.at("post_coef_x0", i, x_t) * x0 + s.at("post_coef_xt", i, x_t) * x_t
        return mean, s.at("post_var", i, x_t).expand_as(x_t), s.at("post_logvar", i, x_t).expand_as(x_t)

    def respaced(self, steps: int) -> Schedule:
        """A schedule over `steps` evenly spaced original steps that keeps their cumulative alphas."""
        T = self.num_steps
        if not 1 <= steps <= T:
            raise ValueError(f"steps must be in [1, {T}], got {steps}")
        keep = torch.tensor([T - 1]) if steps == 1 else torch.linspace(0, T - 1, steps).round().long()
        abar = self.schedule.abar[keep]
        betas = 1 - abar / torch.cat([torch.ones(1, dtype=abar.dtype), abar[:-1]])
        return Schedule(betas, keep)

    # ---- the network's output as a distribution ----

    def _split(self, out, x_t):
        C = x_t.shape[1]
        expected = 2 * C if self.config.learn_sigma else C
        if out.shape[1] != expected:
            raise ValueError(f"network gives {out.shape[1]} channels, diffusion expects {expected} (check learn_sigma)")
        return out[:, :C], (out[:, C:] if self.config.learn_sigma else None)

    def predict_x0(self, pred, x_t, i, schedule: Schedule | None = None) -> torch.Tensor:
        """Convert the network's prediction (eps, v or edm's F) at positions i into a prediction of x0."""
        s = schedule or self.schedule
        a, b = s.at("sqrt_abar", i, x_t), s.at("sqrt_one_minus_abar", i, x_t)
        if self.config.prediction == "eps":
            return (x_t - b * pred) / a
        if self.config.prediction == "v":
            return a * x_t - b * pred
        c_skip, c_out = self._skip_out(a, b)  # "edm"
        return c_skip * x_t + c_out * pred

    def _skip_out(self, a, b):
        """EDM's c_skip and c_out for x_t = a x0 + b eps: the x0 estimate is c_skip x_t + c_out F."""
        sd2 = self.config.sigma_data ** 2
        var = a ** 2 * sd2 + b ** 2  # mean square of x_t for data of RMS sigma_data
        return a * sd2 / var, b * self.config.sigma_data / var.sqrt()

    def network_input(self, x_t, t) -> torch.Tensor:
        """What the network sees for x_t at original steps t: x_t itself, or scaled to unit variance under "edm"."""
        if self.config.prediction != "edm":
            return x_t
        abar = self.schedule.at("abar", t, x_t)
        return x_t / (abar * self.config.sigma_data ** 2 + 1 - abar).sqrt()

    def prediction_target(self, x0, noise, x_t, t) -> torch.Tensor:
        """The regression target of the prediction channels at original steps t."""
        a, b = self.schedule.at("sqrt_abar", t, x0), self.schedule.at("sqrt_one_minus_abar", t, x0)
        if self.config.prediction == "edm":
            c_skip, c_out = self._skip_out(a, b)
            return (x0 - c_skip * x_t) / c_out
        return {"eps": noise, "v": a * noise - b * x0}[self.config.prediction]

    def eps_from_x0(self, x0, x_t, i, schedule: Schedule | None = None) -> torch.Tensor:
        """The noise implied by x_t and a prediction of x0."""
        s = schedule or self.schedule
        return (x_t - s.at("sqrt_abar", i, x_t) * x0) / s.at("sqrt_one_minus_abar", i, x_t)

    def p_mean_variance(self, out, x_t, i, schedule: Schedule | None = None, clip: bool = True):
        """Mean and log-variance of p(x_{t-1} | x_t) plus the implied x0 and eps, at positions i of a schedule."""
        s = schedule or self.schedule
        pred, var_values = self._split(out, x_t)
        x0 = self.predict_x0(pred, x_t, i, s)
        if clip:
            x0 = x0.clamp(-1, 1)
        mean, _, post_logvar = self.q_posterior(x0, x_t, i, s)
        if var_values is None:
            logvar = post_logvar
        else:  # learned range: interpolate between log beta-tilde (min) and log beta (max)
            frac = (var_values + 1) / 2
            logvar = frac * s.at("log_betas", i, x_t) + (1 - frac) * post_logvar
        return mean, logvar, x0, self.eps_from_x0(x0, x_t, i, s)

    # ---- training ----

    def sample_timesteps(self, batch: int, device, high_noise_share: float = 0.0) -> torch.Tensor:
        """Training steps: uniform, except that a share of the batch is drawn from the top tenth of the schedule.

        There x_t is almost pure noise and the network predicts the turned view from the condition alone: the step a
        few-step sampler leans on. Spending more of each batch there trains that prediction faster.
        """
        t = torch.randint(0, self.num_steps, (batch,), device=device)
        n_high = round(batch * high_noise_share)
        if n_high:
            low = self.num_steps - max(1, self.num_steps // 10)
            t[:n_high] = torch.randint(low, self.num_steps, (n_high,), device=device)
        return t

    def vb_bits(self, out, x0, x_t, t) -> torch.Tensor:
        """Per-sample variational-bound term in bits: KL to the posterior, or the decoder NLL at t = 0."""
        true_mean, _, true_logvar = self.q_posterior(x0, x_t, t)
        mean, logvar, _, _ = self.p_mean_variance(out, x_t, t, clip=False)
        kl = mean_flat(normal_kl(true_mean, true_logvar, mean, logvar)) / math.log(2.0)
        nll = -mean_flat(discretized_gaussian_log_likelihood(x0, mean, 0.5 * logvar)) / math.log(2.0)
        return torch.where(t == 0, nll, kl)

    def training_losses(self, net, x0, cond, t=None, camera=None) -> dict:
        """Hybrid loss per sample: MSE on the prediction target + the VB term training only the variance."""
        if t is None:
            t = self.sample_timesteps(x0.shape[0], x0.device)
        noise = torch.randn_like(x0)
        x_t = self.q_sample(x0, t, noise)
        out = net(self.network_input(x_t, t), t, cond, camera=camera).float()
        pred, var_values = self._split(out, x_t)
        target = self.prediction_target(x0, noise, x_t, t)
        mse = mean_flat((pred - target) ** 2)
        # The mean is detached so the bound's gradient trains only the variance (Improved DDPM's hybrid loss).
        frozen = out.detach() if var_values is None else torch.cat([pred.detach(), var_values], dim=1)
        vb = self.vb_bits(frozen, x0, x_t, t)
        loss = mse
        if self.config.learn_sigma:
            loss = loss + vb * (self.num_steps / 1000.0)  # lambda = 0.001 on the full T-term bound
        return {"loss": loss, "mse": mse.detach(), "vb": vb.detach(), "t": t}

    def loss_quartiles(self, terms: dict) -> dict:
        """Mean loss, mse and vb per quarter of the step range, as floats; quarters absent from the batch are left out."""
        quarter = (terms["t"] * 4 // self.num_steps).cpu()
        logs = {}
        for q in range(4):
            mask = quarter == q
            if mask.any():
                for name in ("loss", "mse", "vb"):
                    logs[f"{name}_q{q}"] = terms[name].detach().cpu()[mask].mean().item()
        return logs

    # ---- sampling ----

    def encode_condition(self, net, cond, camera=None, cfg_scale: float = 1.0):
        """Condition state for sampling: the conditional batch, followed by its null copy when guidance is on."""
        B = cond.shape[0]
        drop = torch.zeros(B, dtype=torch.bool, device=cond.device)
        if cfg_scale != 1.0:
            cond = torch.cat([cond, cond])
            camera = None if camera is None else torch.cat([camera, camera])
            drop = torch.cat([drop, ~drop])
        return net.encode_cond(cond, camera=camera, drop_cond=drop)

    def guided_output(self, net, x_t, t, state, cfg_scale: float = 1.0) -> torch.Tensor:
        """Network output with classifier-free guidance on the prediction channels (cond + null in one forward)."""
        x_in = self.network_input(x_t, t)
        if cfg_scale == 1.0:
            return net.denoise(x_in, t, state).float()
        out = net.denoise(torch.cat([x_in, x_in]), torch.cat([t, t]), state).float()
        cond_out, null_out = out.chunk(2)
        C = x_t.shape[1]
        pred = null_out[:, :C] + cfg_scale * (cond_out[:, :C] - null_out[:, :C])
        return torch.cat([pred, cond_out[:, C:]], dim=1)  # the variance comes from the conditional branch

    @torch.no_grad()
    def sample(self, net, cond, steps: int = 50, sampler: str = "ddim", eta: float = 0.0, cfg_scale: float = 1.0,
               camera=None, generator: torch.Generator | None = None, progress=None) -> torch.Tensor:
        """Generate targets [B, C, H, W] in [-1, 1] for condition images; progress(i, n) is called after each step."""
        if sampler not in ("ddim", "ancestral"):
            raise ValueError(f"unknown sampler {sampler!r}; expected 'ddim' or 'ancestral'")
        s = self.respaced(steps)
        n = len(s)

        def randn(shape):  # drawn on the generator's device, so a CPU generator gives the same run on any device
            if generator is None:
                return torch.randn(shape, device=cond.device)
            return torch.randn(shape, generator=generator, device=generator.device).to(cond.device)

        state = self.encode_condition(net, cond, camera, cfg_scale)
        x = randn(cond.shape)
        for step, pos in enumerate(reversed(range(n))):
            i = torch.full((cond.shape[0],), pos, dtype=torch.long)
            t = s.timesteps[i].to(cond.device)
            out = self.guided_output(net, x, t, state, cfg_scale)
            mean, logvar, x0, eps = self.p_mean_variance(out, x, i, s, clip=True)
            if sampler == "ancestral":
                x = mean + (torch.exp(0.5 * logvar) * randn(x.shape) if pos > 0 else 0)
            else:  # DDIM (Song et al. 2021); eta = 1 matches the ancestral step with the posterior variance
                abar, abar_prev = s.at("abar", i, x), s.at("abar_prev", i, x)
                sigma = eta * ((1 - abar_prev) / (1 - abar) * (1 - abar / abar_prev)).sqrt()
                x = abar_prev.sqrt() * x0 + (1 - abar_prev - sigma ** 2).sqrt() * eps
                if pos > 0 and eta > 0:
                    x = x + sigma * randn(x.shape)
            if progress is not None:
                progress(step + 1, n)
        return x.clamp(-1, 1)
