"""torch DDP under ``torchrun``: this process's rank, the process group, the collectives training needs.

:func:`dist_env` reads ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; :func:`init_process_group`
joins the group (NCCL on CUDA, gloo on CPU); :func:`rank_batches` shards each *global* batch of
the single-process loader across the ranks, so a run on N processes takes the same optimiser
steps as one process with the same batch size and seed. :func:`average_gradients`,
:func:`all_sum`, :func:`broadcast_object` and :func:`barrier` are the few collectives the
training loop needs; each is a no-op for one process. A dask cluster for data and inference is
:mod:`climdown.cluster`'s job.

torch is imported inside the functions that need it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from climdown.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "DistEnv",
    "dist_env",
    "init_process_group",
    "rank_batches",
    "average_gradients",
    "all_sum",
    "broadcast_object",
    "barrier",
]

T = TypeVar("T")


@dataclass(frozen=True)
class DistEnv:
    """Where this process stands in a torchrun job.

    Attributes
    ----------
    rank : int
        Global rank, 0 .. world_size - 1 (rank 0 logs and writes checkpoints).
    world_size : int
        Number of processes in the job.
    local_rank : int
        Rank on this node: the index of the GPU this process uses.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """True on rank 0."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when there is more than one process."""
        return self.world_size > 1


def dist_env(environ: dict[str, str] | None = None) -> DistEnv:
    """The torchrun environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) of this process.

    Parameters
    ----------
    environ : dict, optional
        Variables to read (default ``os.environ``). Missing ones mean a single process.

    Raises
    ------
    ConfigError
        If a variable is not an integer or the ranks are out of range.
    """
    env = os.environ if environ is None else environ
    try:
        world = int(env.get("WORLD_SIZE", "1"))
        rank = int(env.get("RANK", "0"))
        local = int(env.get("LOCAL_RANK", str(rank)))
    except ValueError as err:
        raise ConfigError(
            f"RANK/WORLD_SIZE/LOCAL_RANK must be integers ({err}); launch with torchrun, which "
            "sets them"
        ) from err
    if world < 1 or not 0 <= rank < world or local < 0:
        raise ConfigError(
            f"inconsistent torchrun environment: RANK={rank}, WORLD_SIZE={world}, "
            f"LOCAL_RANK={local}; expected 0 <= RANK < WORLD_SIZE"
        )
    return DistEnv(rank=rank, world_size=world, local_rank=local)


def init_process_group(env: DistEnv, device: torch.device) -> bool:
    """Join the torchrun job's process group (NCCL on CUDA, gloo otherwise).

    Parameters
    ----------
    env : DistEnv
        From :func:`dist_env`; nothing happens for a single process.
    device : torch.device
        This rank's device; a CUDA device becomes the current one.

    Returns
    -------
    bool
        True when this call created the group (the caller then destroys it at the end),
        False when it already existed (a script set it up) or there is one process.

    Notes
    -----
    ``MASTER_ADDR`` and ``MASTER_PORT`` come from torchrun (``--master-addr``/``--rdzv-endpoint``).
    """
    import torch
    import torch.distributed as dist

    if not env.distributed or dist.is_initialized():
        return False
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, rank=env.rank, world_size=env.world_size)
    return True


def rank_batches(
    global_batches: list[list[int]], rank: int, world_size: int
) -> list[tuple[list[int], float]]:
    """This rank's part of each global batch, and the weight of its loss.

    Every global batch (a list of sample indices, as the single-process loader yields them)
    is split into ``world_size`` contiguous parts whose sizes differ by at most one. With
    DDP the gradients are *averaged* over the ranks, so a rank holding ``n_r`` of the
    batch's ``N`` samples scales its mean loss by ``n_r * world_size / N``: the averaged
    gradient is then exactly the gradient of the mean loss over the whole global batch, even
    for a last batch that does not divide evenly. A rank left without samples (a last batch
    smaller than the world) gets the batch's first sample with weight 0, so it still joins
    the gradient all-reduce.

    Parameters
    ----------
    global_batches : list of list of int
        The batches of one epoch in step order.
    rank, world_size : int
        This process and the number of processes.

    Returns
    -------
    list of (list of int, float)
        Per step: the sample indices this rank reads and its loss weight.
    """
    out = []
    for batch in global_batches:
        n = len(batch)
        base, extra = divmod(n, world_size)
        lo = rank * base + min(rank, extra)
        size = base + (1 if rank < extra else 0)
        if size == 0:
            out.append(([int(batch[0])], 0.0))
        else:
            out.append(([int(i) for i in batch[lo : lo + size]], size * world_size / n))
    return out


def average_gradients(module: torch.nn.Module, world_size: int) -> None:
    """Average the gradients of ``module`` over all ranks (what DDP does in its hooks).

    For a module that is called more than once per backward pass (the GAN discriminator sees
    the real and the generated batch), which ``DistributedDataParallel`` does not allow.
    """
    import torch
    import torch.distributed as dist

    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if world_size <= 1 or not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world_size
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def all_sum(values: list[float], device: torch.device) -> list[float]:
    """Sum a few numbers over all ranks (float64); returns them unchanged for one process."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return [float(v) for v in t.cpu()]


def broadcast_object(obj: T, src: int = 0) -> T:
    """Rank ``src``'s (picklable) ``obj`` on every rank; ``obj`` itself for one process."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def barrier() -> None:
    """Wait until every rank arrives (nothing for one process)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
