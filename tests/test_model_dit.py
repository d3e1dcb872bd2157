"""Tests of the stream-block DiT network: shapes, zero init, gradients, weights round trip, condition handling."""

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from datasets.camera import camera_vector
from model.dit import DiTConfig, StreamDiT, apply_rope, rope_angles
from model.presets import PRESETS, get_preset


def tiny_config(**overrides) -> DiTConfig:
    cfg, _ = get_preset("tiny", **overrides)
    return cfg


def randomise_zero_init(net: StreamDiT, seed: int = 0) -> StreamDiT:
    """Give the zero-initialised layers random weights, as training would, so outputs depend on every input."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in [b.ada[-1] for b in net.blocks] + [net.final.ada[-1], net.final.linear]:
            for p in layer.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return net


def batch(cfg: DiTConfig, B: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    shape = (B, cfg.in_channels, cfg.image_size, cfg.image_size)
    x_t = torch.randn(shape, generator=g)
    cond = torch.rand(shape, generator=g) * 2 - 1
    t = torch.randint(0, 1000, (B,), generator=g)
    return x_t, t, cond


def seed_param_count() -> int:
    with torch.device("meta"):  # count without allocating the weights
        net = StreamDiT(PRESETS["seed"][0])
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("image_size,patch_size,hidden_size,num_heads,learn_sigma,camera_dim", [
    (32, 4, 64, 2, True, 0), (16, 2, 32, 2, False, 0), (64, 8, 48, 3, True, 4), (24, 4, 64, 4, True, 0)])
def test_dit_output_shapes(image_size, patch_size, hidden_size, num_heads, learn_sigma, camera_dim):
    cfg = tiny_config(image_size=image_size, patch_size=patch_size, hidden_size=hidden_size, num_heads=num_heads,
                      learn_sigma=learn_sigma, camera_dim=camera_dim)
    net = StreamDiT(cfg)
    x_t, t, cond = batch(cfg, B=3)
    camera = camera_vector([60.0, 30.0, -90.0], [0.0, 10.0, 0.0]) if camera_dim else None
    out = net(x_t, t, cond, camera=camera)
    assert out.shape == (3, 6 if learn_sigma else 3, image_size, image_size)


def test_fresh_dit_outputs_exact_zero():
    cfg = tiny_config(camera_dim=4)
    net = StreamDiT(cfg)
    x_t, t, cond = batch(cfg)
    out = net(x_t, t, cond, camera=camera_vector([60.0, 120.0]))
    assert torch.equal(out, torch.zeros_like(out))


def test_dit_gradients_reach_every_parameter_after_one_step():
    cfg = tiny_config(camera_dim=4)
    net = StreamDiT(cfg)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x_t, t, cond = batch(cfg, B=4)
    drop = torch.tensor([True, False, False, True])  # the learned null condition is in use too
    camera = camera_vector([60.0, 30.0, 90.0, 0.0])
    target = torch.randn(4, 6, 32, 32)
    # Zero init: step 1 moves only the output layer, step 2 the modulation, and from step 3 on everything learns.
    for _ in range(3):
        opt.zero_grad()
        (net(x_t, t, cond, camera=camera, drop_cond=drop) - target).square().mean().backward()
        opt.step()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_dit_safetensors_round_trip_gives_identical_outputs(tmp_path):
    cfg = tiny_config(camera_dim=4)
    net = randomise_zero_init(StreamDiT(cfg)).eval()
    save_file(net.state_dict(), tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text(json.dumps(dataclasses.asdict(cfg)))
    loaded = StreamDiT(DiTConfig(**json.loads((tmp_path / "config.json").read_text())))
    loaded.load_state_dict(load_file(tmp_path / "model.safetensors"))
    loaded.eval()
    x_t, t, cond = batch(cfg)
    camera = camera_vector([60.0, 45.0])
    assert torch.equal(net(x_t, t, cond, camera=camera), loaded(x_t, t, cond, camera=camera))


@pytest.mark.parametrize("count", [seed_param_count()], ids=lambda n: f"seed_params={n / 1e6:.2f}M")
def test_model_seed_preset_parameter_count(count):
    # The original's 37.0M had no attention projections, no MLP expansion and no condition blocks.
    print(f"seed preset: {count:,} parameters")
    assert 50e6 < count < 70e6


def test_encode_cond_then_denoise_equals_forward_in_dit():
    cfg = tiny_config(camera_dim=4)
    net = randomise_zero_init(StreamDiT(cfg)).eval()
    x_t, t, cond = batch(cfg, B=3)
    camera, drop = camera_vector([60.0, 20.0, 90.0]), torch.tensor([False, True, False])
    state = net.encode_cond(cond, camera=camera, drop_cond=drop)
    assert torch.equal(net(x_t, t, cond, camera=camera, drop_cond=drop), net.denoise(x_t, t, state))


def test_dit_dropped_condition_ignores_the_image_and_training_drops_at_the_configured_rate():
    cfg = tiny_config()
    net = randomise_zero_init(StreamDiT(cfg)).eval()
    x_t, t, cond = batch(cfg)
    drop = torch.ones(2, dtype=torch.bool)
    other = torch.rand_like(cond) * 2 - 1
    assert torch.equal(net(x_t, t, cond, drop_cond=drop), net(x_t, t, other, drop_cond=drop))
    assert not torch.allclose(net(x_t, t, cond), net(x_t, t, other))
    # In training mode, drop_cond=None drops each sample with probability cond_dropout (here 0.5 for a clear count).
    net = StreamDiT(tiny_config(cond_dropout=0.5)).train()
    torch.manual_seed(0)
    cond = torch.rand(400, 3, 32, 32)
    state = net.encode_cond(cond)
    null = net.encode_cond(cond[:1], drop_cond=torch.ones(1, dtype=torch.bool)).tokens
    dropped = (state.tokens - null).abs().amax(dim=(1, 2)) < 1e-5
    assert 150 < int(dropped.sum()) < 250


def test_dit_camera_model_needs_the_turn_and_a_fixed_turn_model_refuses_one():
    cfg = tiny_config(camera_dim=4)
    net = randomise_zero_init(StreamDiT(cfg)).eval()
    x_t, t, cond = batch(cfg)
    with pytest.raises(ValueError, match="needs the relative camera"):   # the turn is the data's, never assumed
        net(x_t, t, cond)
    assert not torch.allclose(net(x_t, t, cond, camera=camera_vector([60.0, 60.0])),
                              net(x_t, t, cond, camera=camera_vector([120.0, 120.0])))
    fixed = tiny_config(camera_dim=0)
    with pytest.raises(ValueError, match="no camera input"):
        StreamDiT(fixed)(*batch(fixed), camera=camera_vector([60.0, 60.0]))


def test_dit_rope_scores_depend_only_on_relative_grid_position():
    grid, head_dim = 4, 16
    angles = rope_angles(grid, head_dim, 10000.0)
    cos, sin = angles.cos(), angles.sin()
    q = torch.randn(head_dim).expand(1, 1, grid * grid, head_dim)
    k = torch.randn(head_dim).expand(1, 1, grid * grid, head_dim)
    scores = (apply_rope(q, cos, sin)[0, 0] @ apply_rope(k, cos, sin)[0, 0].T)

    def at(r, c):
        return r * grid + c
    # Same offset (1 row, 2 columns) from two different places gives the same score; another offset does not.
    assert torch.allclose(scores[at(0, 0), at(1, 2)], scores[at(2, 1), at(3, 3)], atol=1e-5)
    assert not torch.allclose(scores[at(0, 0), at(1, 2)], scores[at(0, 0), at(2, 1)], atol=1e-3)


def test_dit_bf16_autocast_is_close_to_fp32():
    cfg = tiny_config()
    net = randomise_zero_init(StreamDiT(cfg)).eval()
    x_t, t, cond = batch(cfg)
    ref = net(x_t, t, cond)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(x_t, t, cond)
    assert out.dtype == torch.bfloat16
    assert (out.float() - ref).abs().max() < 0.05 * ref.abs().max()


def test_dit_rejects_bad_sizes():
    net = StreamDiT(tiny_config())
    with pytest.raises(ValueError, match="32x32"):
        net(torch.zeros(1, 3, 64, 64), torch.zeros(1), torch.zeros(1, 3, 64, 64))
    with pytest.raises(ValueError):
        StreamDiT(tiny_config(hidden_size=60, num_heads=2))
    with pytest.raises(ValueError, match="camera"):
        net(torch.zeros(1, 3, 32, 32), torch.zeros(1), torch.zeros(1, 3, 32, 32), camera=camera_vector([60.0]))


def test_model_presets_and_overrides():
    model_cfg, diff_cfg = get_preset("tiny", learn_sigma=False, hidden_size=32, schedule="linear")
    assert (model_cfg.learn_sigma, diff_cfg.learn_sigma, model_cfg.hidden_size, diff_cfg.schedule) == \
        (False, False, 32, "linear")
    assert PRESETS["tiny"][0].hidden_size == 64  # the preset itself is untouched
    seed = get_preset("seed")[0]
    assert (seed.image_size, seed.patch_size, seed.hidden_size, seed.num_heads, seed.depth) == (64, 4, 512, 8, 8)
    with pytest.raises(ValueError, match="unknown preset"):
        get_preset("huge")
    with pytest.raises(ValueError, match="unknown model/diffusion option"):
        get_preset("tiny", hiden_size=3)
