"""Distributed data parallel through torchrun: process group setup (gloo on CPU, nccl on GPU) and small agreements."""
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class Dist:
    """Where this process sits: rank among world_size processes, and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def main(self) -> bool:
        """Rank 0 writes files and shows progress."""
        return self.rank == 0


def setup(device: str = "auto") -> Dist:
    """Join the process group when started by torchrun (WORLD_SIZE > 1); otherwise a single process.

    device: auto (CUDA when available), cpu, cuda (this process's local GPU) or cuda:N (single process)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device not in ("auto", "cpu", "cuda") and not (device.startswith("cuda:") and world_size == 1):
        raise ValueError(f"--device {device!r}: use auto, cpu, cuda (or cuda:N without torchrun)")
    if device != "cpu" and device != "auto" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: no CUDA device is available here")
    cuda = torch.cuda.is_available() if device == "auto" else device != "cpu"
    device = torch.device(device if device.startswith("cuda:") else f"cuda:{local_rank}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world_size == 1:
        return Dist(0, 1, 0, device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    if not cuda and "OMP_NUM_THREADS" not in os.environ:
        # processes on one CPU share its cores: more threads than cores per process only adds contention
        local = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local))
    return Dist(dist.get_rank(), world_size, local_rank, device)


def cleanup(d: Dist) -> None:
    """Leave the process group (torchrun expects every rank to)."""
    if d.world_size > 1 and dist.is_initialized():
        dist.destroy_process_group()


def any_rank(d: Dist, flags: list) -> list:
    """Element-wise OR of boolean flags over all ranks, so every rank stops or saves at the same step."""
    if d.world_size == 1:
        return [bool(f) for f in flags]
    t = torch.tensor([float(f) for f in flags], device=d.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]


def gather(d: Dist, obj) -> list:
    """Every rank's object, in rank order (a one-item list in a single process)."""
    if d.world_size == 1:
        return [obj]
    out = [None] * d.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(d: Dist) -> None:
    """Wait for all ranks."""
    if d.world_size > 1:
        dist.barrier()
