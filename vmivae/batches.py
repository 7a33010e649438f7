"""Seeded batches of indices for data held on the device (what the training loop draws from)."""

from __future__ import annotations

from typing import Any

import torch

from .errors import DataError


class BatchSampler:
    """Seeded batches of indices drawn by permutation, for data held on the device.

    Each epoch is a fresh permutation from a private CPU generator; the incomplete remainder of an
    epoch is dropped (every batch has the same size, which BatchNorm and timing both like). With
    ``world_size > 1`` every process draws the same global batch and keeps its own contiguous shard.
    """

    def __init__(self, n: int, batch_size: int, seed: int, device: torch.device | str = "cpu", rank: int = 0, world_size: int = 1):
        if batch_size > n:
            raise DataError(f"batch_size {batch_size} is larger than the {n} training images; lower batch_size")
        if batch_size % world_size:
            raise DataError(f"batch_size {batch_size} must be divisible by the {world_size} processes")
        self.n, self.batch_size, self.device = n, batch_size, torch.device(device)
        self.shard = slice(rank * batch_size // world_size, (rank + 1) * batch_size // world_size)
        self.generator = torch.Generator().manual_seed(seed)
        self.perm = torch.empty(0, dtype=torch.long)
        self.pos = 0

    def next(self) -> torch.Tensor:
        """Indices of this process's share of the next global batch, on the device."""
        if self.pos + self.batch_size > len(self.perm):
            self.perm = torch.randperm(self.n, generator=self.generator).to(self.device)
            self.pos = 0
        batch = self.perm[self.pos : self.pos + self.batch_size]
        self.pos += self.batch_size
        return batch[self.shard]

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), "perm": self.perm.cpu(), "pos": self.pos}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`, wherever a checkpoint loader put its tensors (a GPU, a strided view):
        a generator state must be a contiguous CPU byte tensor."""
        self.generator.set_state(cpu_bytes(state["generator"]))
        self.perm = torch.as_tensor(state["perm"]).to(self.device, torch.long)
        self.pos = int(state["pos"])


def cpu_bytes(state: Any) -> torch.Tensor:
    """An RNG state as ``torch.set_rng_state`` and ``Generator.set_state`` need it: a contiguous CPU ByteTensor."""
    return torch.as_tensor(state).detach().to("cpu", torch.uint8).contiguous()
