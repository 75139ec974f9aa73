"""Does distributed training work here? One process per device, started by ``torchrun``.

``torchrun --nproc_per_node=N -m monai_wsseg.bench.ddp_check --json OUT`` initialises the process group
(NCCL on GPUs, Gloo on CPUs), checks an all-reduce sums every rank's value, runs a few DistributedDataParallel
steps of a ResNet18 on random 224 px batches and checks the replicas' weights stay identical; rank 0 writes
the backend, world size, step time and the checks to ``OUT``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist

from monai_wsseg.utils.cli import write_json

__all__ = ["main"]


def _check(steps: int, batch: int) -> dict[str, Any]:
    from torchvision.models import resnet18

    rank, world = dist.get_rank(), dist.get_world_size()
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    value = torch.tensor([float(rank + 1)], device=device)
    dist.all_reduce(value)
    all_reduce_ok = bool(value.item() == world * (world + 1) / 2)
    torch.manual_seed(0)
    net = torch.nn.parallel.DistributedDataParallel(resnet18(num_classes=2).to(device),
                                                    device_ids=[device.index] if cuda else None)
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    gen = torch.Generator(device="cpu").manual_seed(rank)  # each rank its own data
    times = []
    for _ in range(steps):
        x = torch.randn(batch, 3, 224, 224, generator=gen).to(device)
        y = torch.randint(0, 2, (batch,), generator=gen).to(device)
        start = time.perf_counter()
        opt.zero_grad()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    checksum = torch.stack([p.detach().float().sum() for p in net.parameters()]).sum().reshape(1)
    gathered = [torch.zeros_like(checksum) for _ in range(world)]
    dist.all_gather(gathered, checksum)
    same = all(torch.allclose(g, gathered[0]) for g in gathered)
    return {"backend": dist.get_backend(), "world_size": world, "device": str(device),
            "all_reduce_ok": all_reduce_ok, "replicas_identical": bool(same),
            "step_s": sorted(times)[len(times) // 2] if times else None, "batch_per_rank": batch}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the check in this rank; rank 0 prints (and writes) the figures."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    try:
        out = _check(args.steps, args.batch)
    finally:
        dist.destroy_process_group()
    if int(os.environ.get("RANK", 0)) == 0:
        print(json.dumps(out))
        if args.json:
            write_json(args.json, out)
    return out


if __name__ == "__main__":
    main()
