"""Checkpoints: write the full training state atomically, find and check the latest one for --resume."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from pgc_fast import config as C
from pgc_fast.train import distributed as D
from pgc_fast.train.runtime import rng_state


def checkpoint_path(ckpt_dir: Path, step: int) -> Path:
    return ckpt_dir / f"step{step:07d}.pth"


def save_checkpoint(ckpt_dir, step, scene, optimizer, scaler, objective, history, timer, ctx) -> Path | None:
    """Write the full state atomically and keep only the latest checkpoint (as the original's max_keep_ckpt=1).

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
        "texture": scene.texture.state_dict(),
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
    path = checkpoint_path(ckpt_dir, step)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    for old in ckpt_dir.glob("step*.pth"):
        if old != path:
            old.unlink()
    return path


def check_resume_config(saved: dict[str, Any] | None, cfg: C.RunConfig) -> None:
    """A resumed run must use the configuration it was started with (resume/force aside)."""
    if saved is None:
        return
    now = C.to_dict(cfg)
    diff = [
        f"{sec}.{k}: {saved[sec][k]!r} -> {v!r}"
        for sec, vals in now.items()
        for k, v in vals.items()
        if (sec, k) not in (("output", "resume"), ("output", "force")) and saved.get(sec, {}).get(k) != v
    ]
    if diff:
        raise C.ConfigError([f"--resume with a different configuration than the checkpoint's: {d}" for d in diff])


def load_resume_state(ckpt_dir: Path, cfg: C.RunConfig, device: torch.device, dist: D.DistInfo) -> dict[str, Any]:
    """The latest checkpoint, checked against this run (configuration, number of processes). Under torchrun
    rank 0 loads it to the CPU and broadcasts it: no shared file system is needed between machines."""
    # To the CPU always: load_state_dict copies onto the run's device, and RNG states must be CPU tensors.
    state = load_latest_checkpoint(ckpt_dir, torch.device("cpu"))
    if state is None:
        raise FileNotFoundError(f"run(): --resume given but {str(ckpt_dir)!r} has no checkpoint")
    check_resume_config(state.get("config"), cfg)
    saved_world = state.get("world_size", 1)
    if saved_world != dist.world_size:
        raise C.ConfigError(
            [
                f"--resume with {dist.world_size} process(es) but the checkpoint was written by "
                f"{saved_world}: each rank's random streams are in it; resume with the same count"
            ]
        )
    return state


def this_rank_state(state: dict[str, Any], dist: D.DistInfo) -> dict[str, Any]:
    """Swap in this rank's RNG and objective states (a checkpoint holds every rank's)."""
    ranks = state.get("ranks")
    if dist.enabled and ranks:
        state = dict(state, rng=ranks[dist.rank]["rng"], objective=ranks[dist.rank]["objective"])
    return state


def load_latest_checkpoint(ckpt_dir: Path, device: torch.device) -> dict[str, Any] | None:
    paths = sorted(ckpt_dir.glob("step*.pth"))
    if not paths:
        return None
    return torch.load(paths[-1], map_location=device, weights_only=False)
