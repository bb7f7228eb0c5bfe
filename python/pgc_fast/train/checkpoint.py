"""Checkpoints: write the full training state atomically (no pickle: :mod:`pgc_fast.train.state_file`), keep the
latest two, and find the newest intact one for --resume (a damaged newest one falls back to the one before, with
a note), checked against this run's configuration."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from pgc_fast import config as C
from pgc_fast.export.files import is_temp_name, write_bytes_atomic
from pgc_fast.train import distributed as D
from pgc_fast.train import state_file as S
from pgc_fast.train.runtime import rng_state
from pgc_fast.train.state_file import CheckpointError

__all__ = [
    "KEEP",
    "CheckpointError",
    "check_resume_config",
    "checkpoint_files",
    "checkpoint_path",
    "has_checkpoint",
    "load_resume_state",
    "read_latest_checkpoint",
    "save_checkpoint",
    "this_rank_state",
]

KEEP = 2
"""Checkpoints kept: the newest and the one before, which --resume uses if the newest is damaged."""
_SUFFIX = ".safetensors"
_PICKLE_SUFFIXES = (".pth", ".pt", ".ckpt", ".pkl")
# Configuration fields a resumed run may change: the flags themselves and where the workspace lives (a moved or
# copied workspace resumes). optim.iters may grow (check_resume_config).
_MAY_DIFFER = {("output", "resume"), ("output", "force"), ("output", "workspace"), ("output", "root")}


def checkpoint_path(ckpt_dir: Path, step: int) -> Path:
    return ckpt_dir / f"step{step:07d}{_SUFFIX}"


def checkpoint_files(ckpt_dir: Path) -> list[Path]:
    """The checkpoint files of ``ckpt_dir``, oldest first (temporary files of an interrupted write excluded)."""
    if not ckpt_dir.is_dir():
        return []
    return sorted(p for p in ckpt_dir.glob(f"step*{_SUFFIX}") if not is_temp_name(p.name))


def _pickle_files(ckpt_dir: Path) -> list[Path]:
    """torch.save checkpoints (older pgc-fast versions wrote step*.pth): never loaded, see read_latest_checkpoint."""
    if not ckpt_dir.is_dir():
        return []
    return sorted(p for p in ckpt_dir.iterdir() if p.suffix in _PICKLE_SUFFIXES and not is_temp_name(p.name))


def has_checkpoint(ckpt_dir: Path) -> bool:
    """Whether ``ckpt_dir`` holds a checkpoint (in any format): a workspace that does has a run to lose."""
    return bool(checkpoint_files(ckpt_dir) or _pickle_files(ckpt_dir))


def save_checkpoint(ckpt_dir, step, scene, optimizer, scaler, objective, history, timer, ctx) -> Path | None:
    """Write the full state atomically (temporary file, fsync, rename) and keep the latest :data:`KEEP`.

    Every rank calls this (a collective): the texture, optimiser and scaler are identical on all ranks; the RNG
    and objective states (guidance noise generator, …) differ, so all of them are gathered into ``ranks`` and
    rank 0 writes the file."""
    own = {"rng": rng_state(ctx.device), "objective": objective.state_dict()}
    ranks = D.gather_object(own, ctx.dist)
    if not ctx.dist.is_main:
        return None
    assert ranks is not None
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    state = {
        "step": step,
        "schedule_iters": ctx.schedule_iters,
        "texture": scene.texture.state_dict(),
        "geometry": scene.geometry.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "objective": own["objective"],
        "rng": own["rng"],
        "world_size": ctx.dist.world_size,
        "ranks": ranks if ctx.dist.enabled else None,
        "history": history,
        "phases": dict(timer.phases),
        "config": C.to_dict(scene.cfg),
    }
    path = write_bytes_atomic(checkpoint_path(ckpt_dir, step), S.dumps(state))
    for old in checkpoint_files(ckpt_dir)[:-KEEP]:
        old.unlink()
    for stale in (p for p in ckpt_dir.iterdir() if is_temp_name(p.name)):  # left by a kill during a write
        stale.unlink()
    return path


def check_resume_config(saved: dict[str, Any] | None, cfg: C.RunConfig, schedule_iters: int) -> list[str]:
    """A resumed run must use the configuration it was started with, except where the workspace lives and a larger
    optim.iters (the run is extended). Returns notes to print; raises ConfigError listing every difference."""
    if saved is None:
        return []
    now = C.to_dict(cfg)
    diff = [
        f"{sec}.{k}: {saved.get(sec, {}).get(k)!r} -> {v!r}"
        for sec, vals in now.items()
        for k, v in vals.items()
        if (sec, k) not in _MAY_DIFFER and (sec, k) != ("optim", "iters") and saved.get(sec, {}).get(k) != v
    ]
    old_iters, new_iters = saved.get("optim", {}).get("iters"), cfg.optim.iters
    if isinstance(old_iters, int) and new_iters < old_iters:
        diff.append(f"optim.iters: {old_iters} -> {new_iters} (a run can be extended, not shortened)")
    if diff:
        raise C.ConfigError([f"--resume with a different configuration than the checkpoint's: {d}" for d in diff])
    notes = []
    if isinstance(old_iters, int) and new_iters > old_iters:
        notes.append(
            f"--resume extends the run from optim.iters {old_iters} to {new_iters}; the schedules that depend on "
            f"the run length (zoom stages, DreamTime/BGT+ timesteps, t-range annealing) keep the length it was "
            f"started with ({schedule_iters}) and hold their final values (finest zoom, lowest noise) over the "
            f"extra steps, so the result differs from a fresh --iters {new_iters} run whenever such a schedule is on"
        )
    old_ws = saved.get("output", {})
    if (old_ws.get("workspace"), old_ws.get("root")) != (cfg.output.workspace, cfg.output.root):
        notes.append("the workspace was moved or copied since its last checkpoint; resuming it where it is now")
    return notes


def read_latest_checkpoint(ckpt_dir: Path) -> tuple[dict[str, Any] | None, list[str]]:
    """(the newest intact checkpoint's state or None if there is none, notes on the damaged ones skipped).

    A pickle checkpoint is refused outright (CheckpointError), never unpickled; a damaged file (checksum,
    truncation, not a checkpoint) is skipped for the one before it; if every checkpoint is damaged, CheckpointError."""
    pickles = _pickle_files(ckpt_dir)
    if pickles:
        raise CheckpointError(
            f"refusing checkpoint {str(pickles[-1])!r}: it is a pickle (torch.save) file, and loading a pickle can "
            f"run code; pgc-fast checkpoints are step*{_SUFFIX} (tensors + JSON): remove it to resume from those, "
            f"or start again with --force"
        )
    damaged: list[str] = []
    for path in reversed(checkpoint_files(ckpt_dir)):
        try:
            state = _read(path)
        except S.DamagedCheckpointError as e:
            damaged.append(f"{path.name} ({e})")
            continue
        except CheckpointError as e:
            raise CheckpointError(
                f"refusing checkpoint {str(path)!r}: {e}; remove it, or start again with --force"
            ) from None
        notes = [f"checkpoint {d} is damaged; resuming from {path.name} instead" for d in damaged]
        return state, notes
    if damaged:
        raise CheckpointError(
            f"no intact checkpoint in {str(ckpt_dir)!r}: {'; '.join(damaged)}; start again with --force"
        )
    return None, []


_REQUIRED = {"step": int, "texture": dict, "optimizer": dict, "scaler": dict, "rng": dict, "history": dict}


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise S.DamagedCheckpointError("not a regular file")
    state = S.loads(path.read_bytes())
    if not isinstance(state, dict):
        raise S.DamagedCheckpointError("not a training state")
    bad = [k for k, t in _REQUIRED.items() if not isinstance(state.get(k), t)]
    if bad:
        raise S.DamagedCheckpointError(f"not a complete training state (missing or wrong: {', '.join(bad)})")
    return state


def load_resume_state(ckpt_dir: Path, cfg: C.RunConfig, dist: D.DistInfo) -> dict[str, Any] | None:
    """The newest intact checkpoint, checked against this run (configuration, number of processes), or None when
    the workspace has none yet. Notes go to stderr. Under torchrun rank 0 loads it (tensors on the CPU: the
    modules copy them to the run's device, RNG states must be CPU tensors) and broadcasts it: no shared file
    system is needed between machines."""
    state, notes = read_latest_checkpoint(ckpt_dir)
    if state is None:
        return None
    saved_iters = state.get("config", {}).get("optim", {}).get("iters", cfg.optim.iters)
    state.setdefault("schedule_iters", saved_iters)
    notes += check_resume_config(state.get("config"), cfg, state["schedule_iters"])
    saved_world = state.get("world_size", 1)
    if saved_world != dist.world_size:
        raise C.ConfigError(
            [
                f"--resume with {dist.world_size} process(es) but the checkpoint was written by "
                f"{saved_world}: each rank's random streams are in it; resume with the same count"
            ]
        )
    for n in notes:
        print(f"note: {n}", file=sys.stderr)
    return state


def this_rank_state(state: dict[str, Any], dist: D.DistInfo) -> dict[str, Any]:
    """Swap in this rank's RNG and objective states (a checkpoint holds every rank's)."""
    ranks = state.get("ranks")
    if dist.enabled and ranks:
        state = dict(state, rng=ranks[dist.rank]["rng"], objective=ranks[dist.rank]["objective"])
    return state
