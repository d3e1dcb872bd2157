"""The FLOP count behind MFU, and the fast training path (compiled blocks, fused AdamW) keeping the network's maths."""
import dataclasses

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from model.dit import StreamDiT, attention
from model.flops import forward_flops, train_flops
from model.presets import get_preset
from train.loop import make_optimizer, use_compile


@pytest.mark.parametrize("preset,overrides", [("tiny", {}), ("demo", {}), ("tiny", {"camera_dim": 4, "mlp_ratio": 2.0})])
def test_flops_counted_from_shapes_match_torch_flop_counter(preset, overrides):
    cfg = dataclasses.replace(get_preset(preset)[0], **overrides)
    net = StreamDiT(cfg)
    x = torch.randn(2, 3, cfg.image_size, cfg.image_size)
    camera = torch.randn(2, 4) if cfg.camera_dim else None
    # The math backend runs attention as matmuls, which the counter sees (the fused CPU kernel it does not).
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        net(x, torch.tensor([3, 500]), x, camera=camera)
    assert counter.get_total_flops() == 2 * forward_flops(cfg)
    assert train_flops(cfg) == 3 * forward_flops(cfg)


def test_demo_preset_flops_per_training_sample():
    assert train_flops(get_preset("demo")[0]) / 1e9 == pytest.approx(1.6786, abs=1e-3)


def test_compile_is_automatic_for_every_preset_but_tiny():
    assert use_compile("auto", "demo") and use_compile("auto", "small") and not use_compile("auto", "tiny")
    assert use_compile(True, "tiny") and not use_compile(False, "demo")


def test_written_out_attention_matches_the_fused_kernel():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 64, 16, requires_grad=True) for _ in range(3))
    for dtype, tol in ((torch.float32, 1e-5), (torch.bfloat16, 2e-2)):
        ours = attention(*(x.to(dtype) for x in (q, k, v))).float()
        fused = torch.nn.functional.scaled_dot_product_attention(*(x.to(dtype) for x in (q, k, v))).float()
        assert (ours - fused).abs().max().item() < tol
    grads = [torch.autograd.grad(fn(q, k, v).square().sum(), (q, k, v))
             for fn in (attention, torch.nn.functional.scaled_dot_product_attention)]
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-4)


def test_compiled_blocks_keep_outputs_gradients_and_state_dict_keys():
    torch.manual_seed(0)
    cfg = get_preset("tiny")[0]
    eager, compiled = StreamDiT(cfg), StreamDiT(cfg)
    for block in eager.blocks:  # non-zero adaLN so every branch contributes
        torch.nn.init.normal_(block.ada[-1].weight, std=0.05)
    compiled.load_state_dict(eager.state_dict())
    compiled.compile_blocks()
    assert list(compiled.state_dict()) == list(eager.state_dict())  # checkpoints keep loading both ways
    x, cond, t = torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32), torch.tensor([1, 200, 600, 999])
    drop = torch.tensor([False, True, False, False])
    for dtype, tol in ((torch.float32, 1e-4), (torch.bfloat16, 3e-2)):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            a = eager(x, t, cond, drop_cond=drop).float()
            b = compiled(x, t, cond, drop_cond=drop).float()
        assert (a - b).abs().max().item() <= tol * a.abs().max().item()
    a.sum().backward()
    b.sum().backward()
    ga, gb = eager.blocks[0].self_attn.q.weight.grad, compiled.blocks[0].self_attn.q.weight.grad
    assert torch.allclose(ga, gb, rtol=5e-2, atol=5e-2 * ga.abs().max().item())


def test_fused_adamw_takes_the_same_steps_as_the_foreach_one():
    torch.manual_seed(0)
    nets = [StreamDiT(get_preset("tiny")[0]) for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    opts = [torch.optim.AdamW(nets[0].parameters(), lr=1e-3, weight_decay=0.01),
            make_optimizer(nets[1], {"lr": 1e-3, "weight_decay": 0.01}, torch.device("cpu"))]
    assert opts[1].defaults["fused"]
    for _ in range(3):  # the same gradients into both: only the optimizers' arithmetic differs
        grads = [torch.randn_like(p) for p in nets[0].parameters()]
        for net, opt in zip(nets, opts):
            for p, g in zip(net.parameters(), grads):
                p.grad = g.clone()
            opt.step()
    for p, q in zip(nets[0].parameters(), nets[1].parameters()):
        assert torch.allclose(p, q, atol=1e-6)
