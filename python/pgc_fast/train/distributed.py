"""Data parallelism on PyTorch's own engine (torchrun + ``torch.distributed``): one process per GPU, each
rendering its own ``batch_size`` views; texture gradients averaged across processes after backward.

How a run becomes distributed::

    pgc-fast generate --gpus 0,1 …      ──► relaunch(): python -m torch.distributed.run --standalone
                                             --nproc-per-node 2 -m pgc_fast.cli generate …  (CUDA_VISIBLE_DEVICES=0,1)
    torchrun --nnodes M --nproc-per-node N -m pgc_fast.cli generate …   (directly; several machines too)
        ──► every worker: init() reads RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT,
            NCCL on CUDA (device cuda:LOCAL_RANK) or gloo on the CPU, NCCL_NVLS_ENABLE=0 unless set;
            run(cfg) on every rank; finish() (barrier + destroy) at a clean end.

Semantics (the original's DDP, the original's nerf/utils.py, Trainer (DDP)): effective batch = world_size × batch_size
views per step;
gradients of every optimised parameter are averaged (so a loss that is a mean over a rank's views gives the
gradient of the mean over all views). The average is an explicit bucketed ``all_reduce`` after
``scaler.scale(loss).backward()`` and before ``scaler.unscale_``: an inf/NaN on any rank becomes inf/NaN on all,
so every rank's GradScaler skips the same steps and keeps the same scale.

Randomness: per-step generators keyed by (seed, step, stream) replace running streams for cameras, so the
camera (or target view) of global view index g at step s is the same whatever the number of processes —
2 processes × B views reproduce 1 process × 2B views up to float reduction order
(tests/pipeline/test_distributed.py). Render randomness (random shading, light jitter, position perturbation)
uses a per-step generator keyed by rank as well, and the guidance noise a generator seeded ``seed + rank`` (the
original's ``seed + global_rank``); their states are checkpointed per rank.
"""

from __future__ import annotations

import atexit
import os
import pickle
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

__all__ = [
    "DistInfo",
    "SINGLE",
    "launched_by_torchrun",
    "env_info",
    "init",
    "info",
    "all_reduce_grads",
    "broadcast_module",
    "average_floats",
    "gather_object",
    "rank0_call",
    "barrier",
    "finish",
    "step_generator",
    "mix_seed",
    "STREAM_CAMERAS",
    "STREAM_RENDER",
    "STREAM_REGULARIZER",
    "relaunch",
]

T = TypeVar("T")

STREAM_CAMERAS = 1
"""Per-step stream shared by all ranks: camera poses / target-view choice of the whole global batch."""
STREAM_RENDER = 2
"""Per-step, per-rank stream: random shading, light jitter, position perturbation."""
STREAM_REGULARIZER = 3
"""Per-step, per-rank stream: the probe offsets of regularisers (the PBR kd smoothness)."""


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job. ``rank`` is the global rank (0 … world_size − 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def enabled(self) -> bool:
        """More than one process: collectives are needed."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: writes outputs, shows the progress bar."""
        return self.rank == 0

    def view_slice(self, per_rank: int) -> slice:
        """This rank's global view indices when every rank renders ``per_rank`` views."""
        return slice(self.rank * per_rank, (self.rank + 1) * per_rank)


SINGLE = DistInfo()
"""A single process."""


def launched_by_torchrun() -> bool:
    """True inside a worker started by torchrun (or any launcher that sets RANK and WORLD_SIZE)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def env_info() -> DistInfo:
    """DistInfo from torchrun's environment variables (SINGLE outside torchrun); no process group needed."""
    if not launched_by_torchrun():
        return SINGLE
    try:
        world = int(os.environ["WORLD_SIZE"])
        rank = int(os.environ["RANK"])
        local = int(os.environ.get("LOCAL_RANK", rank))
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    except ValueError as e:
        raise ValueError(f"env_info(): RANK/WORLD_SIZE/LOCAL_RANK must be integers, got {e}") from None
    if not 0 <= rank < world:
        raise ValueError(f"env_info(): RANK must be in [0, WORLD_SIZE={world}), got {rank}")
    return DistInfo(rank, world, local, local_world)


def info() -> DistInfo:
    """This process's DistInfo: from the initialised process group, else SINGLE."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return DistInfo(
            dist.get_rank(),
            dist.get_world_size(),
            int(os.environ.get("LOCAL_RANK", 0)),
            int(os.environ.get("LOCAL_WORLD_SIZE", dist.get_world_size())),
        )
    return SINGLE


def init(cuda: bool) -> DistInfo:
    """Join the job described by torchrun's environment (idempotent; SINGLE when WORLD_SIZE is absent or 1).

    Args:
        cuda: the run trains on CUDA: backend NCCL and ``torch.cuda.set_device(LOCAL_RANK)``; else gloo.
    Returns:
        DistInfo of this process. The group is destroyed at interpreter exit.
    """
    import torch.distributed as dist

    env = env_info()
    if not env.enabled:
        return SINGLE
    if dist.is_initialized():
        return info()
    # NVLink SHARP (multicast) off unless the user asks: it reserves memory per communicator and is not
    # available on every partitioned machine; plain ring/tree all-reduce is what this workload needs.
    os.environ.setdefault("NCCL_NVLS_ENABLE", "0")
    if cuda:
        if not torch.cuda.is_available():
            raise RuntimeError("init(): a CUDA run was requested but torch sees no CUDA device")
        if env.local_rank >= torch.cuda.device_count():
            raise RuntimeError(
                f"init(): LOCAL_RANK {env.local_rank} but only {torch.cuda.device_count()} visible CUDA device(s); "
                f"start at most that many processes per node or set CUDA_VISIBLE_DEVICES"
            )
        torch.cuda.set_device(env.local_rank)
        dist.init_process_group("nccl", device_id=torch.device("cuda", env.local_rank))
    else:
        dist.init_process_group("gloo")
    atexit.register(_destroy)
    return info()


def _destroy() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def finish(d: DistInfo | None = None, *, exit_code: int | None = None) -> None:
    """Clean end of a job, called by every rank at the same point (the CLI after ``run``): wait for all ranks
    (rank 0 may still be exporting), then tear the group down. Without the barrier a rank that leaves first
    closes its gloo sockets under the other's teardown, which then aborts (SIGABRT, about one run in six here).
    Not registered at exit: after an error on one rank a barrier would pair with another rank's all-reduce.

    gloo's teardown can still abort a process at exit ("terminate called without an active exception" from a
    joinable thread, ~1 run in 10 on the CI machine even after the barrier). With ``exit_code`` given, a gloo
    rank therefore flushes its streams and leaves with ``os._exit(exit_code)`` right after the barrier, skipping
    the C++ destructors; every file it wrote is closed by then. NCCL groups are destroyed normally."""
    import torch.distributed as dist

    d = d or info()
    if d.enabled and dist.is_initialized():
        dist.barrier()
        if dist.get_backend() == "gloo" and exit_code is not None:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(exit_code)
        dist.destroy_process_group()


def _comm_device(d: DistInfo) -> torch.device:
    import torch.distributed as dist

    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


# --------------------------------------------------------------------------------------------- collectives


def _grad_or_zeros(p: torch.Tensor) -> torch.Tensor:
    g = p.grad
    return g if g is not None else torch.zeros_like(p)


def all_reduce_grads(params: Iterable[torch.Tensor], d: DistInfo | None = None) -> None:
    """Average ``p.grad`` over all ranks, in place, for every parameter that requires grad.

    A parameter with no gradient on some ranks gets zeros there before the sum (as DDP with unused parameters);
    one with no gradient on any rank keeps ``grad = None`` so the optimiser skips it, as in a single process.
    The gradients and a has-grad flag per parameter travel as one flat buffer per dtype (one collective each).
    """
    import torch.distributed as dist

    d = d or info()
    if not d.enabled:
        return
    ps = [p for p in params if p.requires_grad]
    if not ps:
        return
    dev = _comm_device(d)
    flags = torch.tensor([p.grad is not None for p in ps], dtype=torch.float32, device=dev)
    groups: dict[torch.dtype, list[int]] = {}
    for i, p in enumerate(ps):
        groups.setdefault(p.dtype, []).append(i)
    if torch.float32 not in groups:
        groups[torch.float32] = []
    for dtype, idx in groups.items():
        parts = [_grad_or_zeros(ps[i]).reshape(-1).to(dev) for i in idx]
        if dtype == torch.float32:
            parts.append(flags)
        flat = torch.cat(parts) if len(parts) > 1 else parts[0].clone()
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        if dtype == torch.float32:
            flags = flat[-len(ps) :]
            flat = flat[: flat.numel() - len(ps)]
        flat.div_(d.world_size)
        off = 0
        for i in idx:
            p = ps[i]
            n = p.numel()
            g = flat[off : off + n].view_as(p).to(p.device)
            off += n
            if p.grad is None:
                p.grad = g.clone()
            else:
                p.grad.copy_(g)
    keep = flags.cpu().tolist()
    for p, k in zip(ps, keep, strict=False):
        if k == 0:  # unused on every rank
            p.grad = None


@torch.no_grad()
def broadcast_module(module: torch.nn.Module, d: DistInfo | None = None) -> None:
    """Copy rank 0's parameters and buffers into every rank's ``module`` (all ranks start identical)."""
    import torch.distributed as dist

    d = d or info()
    if not d.enabled:
        return
    dev = _comm_device(d)
    for t in list(module.parameters()) + list(module.buffers()):
        buf = t.detach().to(dev).clone()
        dist.broadcast(buf, src=0)
        t.copy_(buf.to(t.device))


def average_floats(stats: dict[str, float], d: DistInfo | None = None) -> dict[str, float]:
    """Mean of each float over all ranks (keys must be the same on every rank; NaN stays NaN)."""
    import torch.distributed as dist

    d = d or info()
    if not d.enabled or not stats:
        return stats
    keys = sorted(stats)
    t = torch.tensor([float(stats[k]) for k in keys], dtype=torch.float64, device=_comm_device(d))
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return dict(zip(keys, (t / d.world_size).cpu().tolist(), strict=False))


def gather_object(obj: Any, d: DistInfo | None = None) -> list[Any] | None:
    """Every rank's ``obj`` as a list on rank 0 (index = rank); None on the other ranks. Single process: [obj]."""
    import torch.distributed as dist

    d = d or info()
    if not d.enabled:
        return [obj]
    out: list[Any] | None = [None] * d.world_size if d.is_main else None
    dist.gather_object(obj, out, dst=0)
    return out


class RankZeroError(RuntimeError):
    """An exception raised on rank 0 that could not be sent as itself to the other ranks."""


def rank0_call(fn: Callable[[], T], d: DistInfo | None = None) -> T:
    """Run ``fn`` on rank 0 only and give its result to every rank; an exception there is raised on every rank
    (as itself when it pickles faithfully, else as RankZeroError with its message), so no rank hangs."""
    import torch.distributed as dist

    d = d or info()
    if not d.enabled:
        return fn()
    box: list[Any] = [None]
    if d.is_main:
        try:
            box[0] = ("ok", fn())
        except Exception as e:  # noqa: BLE001 - re-raised on every rank below
            box[0] = ("err", _portable_exception(e))
            err = e
    dist.broadcast_object_list(box, src=0)
    kind, payload = box[0]
    if kind == "err":
        if d.is_main:
            raise err  # the original object, traceback included
        raise payload
    return payload


def _portable_exception(e: BaseException) -> BaseException:
    try:
        back = pickle.loads(pickle.dumps(e))
        if type(back) is type(e) and str(back) == str(e):
            return e
    except Exception:  # noqa: BLE001
        pass
    return RankZeroError(f"rank 0: {type(e).__name__}: {e}")


def barrier(d: DistInfo | None = None) -> None:
    import torch.distributed as dist

    d = d or info()
    if d.enabled:
        dist.barrier()


# --------------------------------------------------------------------------------------------- seeds

_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def mix_seed(*keys: int) -> int:
    """A 63-bit seed that is a hash of integer keys (splitmix64 chain): nearby keys give unrelated streams."""
    h = 0
    for k in keys:
        h = _splitmix64(h ^ (int(k) & _MASK64))
    return h >> 1


def step_generator(seed: int, step: int, stream: int, rank: int | None = None) -> torch.Generator:
    """A fresh CPU generator for one step: a function of (seed, step, stream[, rank]) only, so a resumed or
    re-sharded run draws the same numbers without carrying generator state."""
    keys = (seed, step, stream) if rank is None else (seed, step, stream, rank)
    return torch.Generator().manual_seed(mix_seed(*keys))


# --------------------------------------------------------------------------------------------- launcher


def relaunch(argv: Sequence[str], gpus: str, *, module: str = "pgc_fast.cli", cuda: bool = True) -> int:
    """Run ``python -m <module> <argv>`` as ``len(gpus)`` processes under torchrun on this machine and wait.

    ``CUDA_VISIBLE_DEVICES`` is set to ``gpus`` (the original's ``--gpus``) when ``cuda``, so rank r uses the
    r-th listed GPU; ``--standalone`` picks a free rendezvous port. Returns torchrun's exit status (130 after
    Ctrl-C, which torchrun forwards to the workers).
    """
    ids = [g.strip() for g in gpus.split(",") if g.strip()]
    if len(ids) < 2:
        raise ValueError(f"relaunch(): gpus must list at least 2 devices, got {gpus!r}")
    env = dict(os.environ)
    if cuda:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(ids)
    env.setdefault("NCCL_NVLS_ENABLE", "0")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={len(ids)}",
        "-m",
        module,
        *argv,
    ]
    proc = subprocess.Popen(cmd, env=env)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        try:
            return proc.wait(timeout=60) or 130
        except subprocess.TimeoutExpired:
            proc.terminate()
            return 130
