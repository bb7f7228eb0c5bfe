"""Run metrics: phase timer, memory peaks, batched read-back of step statistics, progress bar, JSON helpers."""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    import rich.progress


class Timer:
    """Per-phase wall-clock timings (CUDA-synchronised at phase boundaries)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.phases: dict[str, float] = {}

    @contextlib.contextmanager
    def phase(self, name: str):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.phases[name] = self.phases.get(name, 0.0) + time.perf_counter() - t0


def process_age_s() -> float | None:
    """Seconds since this process started (Linux: /proc), None where that cannot be read. A run's metrics use it
    for the time spent before :func:`pgc_fast.train.run` (interpreter start, imports, argument parsing)."""
    import os

    try:
        with open("/proc/self/stat") as f:
            # the command name (field 2) may hold spaces: fields after its closing parenthesis; starttime is 22nd
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, AttributeError):
        return None


PHASE_GROUPS = {
    "load": ("load_mesh", "load_model", "init_texture"),
    "compile": ("compile",),
    "steps": ("steps", "checkpoint", "validation"),
    "export": ("export_mesh", "final_views"),
    "turntable": ("turntable",),
    "report": ("report",),
}
"""The user-facing split of a run's wall time (metrics.json ``phases_grouped_s``) over the timer's phases:
``compile`` is the session's first step (torch.compile of the UNet blocks, Triton JIT, autotuning, and one step);
``steps`` the other steps with the validation images and checkpoints written between them. What comes before
:func:`pgc_fast.train.run` (interpreter start, imports) is metrics.json's ``startup_s``."""


def grouped_phases(phases: dict[str, float]) -> dict[str, float]:
    """:data:`PHASE_GROUPS` summed over ``phases`` (absent phases count 0)."""
    return {g: round(sum(phases.get(p, 0.0) for p in names), 4) for g, names in PHASE_GROUPS.items()}


def peak_memory_mib(device: torch.device) -> dict[str, float]:
    out: dict[str, float] = {}
    if device.type == "cuda":
        out["gpu_peak_allocated_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
        out["gpu_peak_reserved_mib"] = torch.cuda.max_memory_reserved(device) / 2**20
    try:
        import resource

        out["cpu_peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    except ImportError:  # pragma: no cover - non-POSIX (no resource module)
        pass
    return out


def json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, float) and math.isnan(o):
        return None
    return str(o)


def clip_summary(history: dict[str, list]) -> dict[str, Any]:
    vals = [v for v in history["clip_frac"] if v == v]  # drop NaN (PGC off)
    if not vals:
        return {"enabled": False}
    return {
        "enabled": True,
        "mean_clip_frac": float(np.mean(vals)),
        "last_clip_frac": vals[-1],
        "max_clip_frac": float(np.max(vals)),
    }


GEOMETRY_STATS = ("mesh_vertices", "mesh_faces", "extract_ms")
"""Step statistics of a DMTet shape (train/dmtet.py) kept per step in the history."""


def geometry_summary(cfg: Any, history: dict[str, list]) -> dict[str, Any]:
    """metrics.json's ``geometry``: the shape kind, and for DMTet the grid, the last extracted mesh's size and
    the extraction time per step (mean and last, ms; per step in ``history``)."""
    out: dict[str, Any] = {"shape": cfg.mesh.shape}
    if cfg.mesh.shape != "dmtet":
        return out
    out["tet_res"] = cfg.mesh.tet_res
    for k in ("mesh_vertices", "mesh_faces"):
        if history.get(k):
            out[k] = int(history[k][-1])
    ms = [v for v in history.get("extract_ms", []) if v == v]
    if ms:
        out["extract_ms_mean"] = float(np.mean(ms))
        out["extract_ms_last"] = ms[-1]
    return out


# Steps between read-backs of the step statistics (one device→host transfer for all of them).
STATS_EVERY = 10


def steady_s_per_it(history: dict[str, list], steps_run: int) -> float | None:
    """Seconds per step of this session after its first STATS_EVERY steps (which pay torch.compile and Triton
    JIT), from the history times recorded at each stats read-back; None for runs too short to tell."""
    if steps_run <= 2 * STATS_EVERY:
        return None
    steps, times = history["step"][-steps_run:], history["time"][-steps_run:]
    first = steps[0] + STATS_EVERY - 1
    i = next(
        (k for k, st in enumerate(steps) if st >= first and (k + 1 == len(steps) or times[k + 1] != times[k])), None
    )
    if i is None or steps[-1] <= steps[i]:
        return None
    return (times[-1] - times[i]) / (steps[-1] - steps[i])


def materialise_stats(entries: list[tuple[int, dict[str, Any]]]) -> list[tuple[int, dict[str, float]]]:
    """[(step, {name: float or 0-d tensor})] → the same with floats, reading every tensor back in ONE transfer."""
    tensors = [v.detach().float().mean() for _, st in entries for v in st.values() if torch.is_tensor(v)]
    if len({t.device for t in tensors}) == 1:
        vals = iter(torch.stack(tensors).tolist())
    else:  # mixed devices (or none): one read each
        vals = iter([float(t) for t in tensors])
    return [(k, {n: (next(vals) if torch.is_tensor(v) else float(v)) for n, v in st.items()}) for k, st in entries]


PARAMS_FINITE = "_params_finite"
"""Stats key of the 0-d flag 'every trained parameter is finite', read back with the step statistics."""


class NonFiniteError(RuntimeError):
    """The loss or the parameters stopped being finite; the run stops before writing anything made of them."""


def params_finite(params: Any) -> torch.Tensor:
    """0-d bool tensor on the parameters' device: all of them finite. No host sync (one reduction per tensor)."""
    flags = [torch.isfinite(p.detach()).all() for p in params]
    return torch.stack(flags).all() if flags else torch.tensor(True)


def raise_if_non_finite(entries: list[tuple[int, dict[str, float]]], *, grad_scaler: bool, checkpoints: Path) -> None:
    """Stop the run (NonFiniteError naming the step) when a read-back window shows a non-finite loss or parameter.

    With a GradScaler a non-finite loss makes the scaler skip that step (the parameters stay as they were), so
    only a window of nothing but non-finite losses stops the run; without one the first such loss does."""
    bad = [(k, st["loss"]) for k, st in entries if "loss" in st and not math.isfinite(st["loss"])]
    params_bad = next((k for k, st in entries if st.get(PARAMS_FINITE, 1.0) == 0.0), None)
    if params_bad is None and (not bad or (grad_scaler and len(bad) < len(entries))):
        return
    have = sorted(checkpoints.glob("*")) if checkpoints.is_dir() else []
    kept = f"the last good checkpoint is kept in {checkpoints}" if have else "no checkpoint had been written yet"
    what = (
        f"the loss became {bad[0][1]} at step {bad[0][0]}"
        if bad
        else f"the parameters became non-finite by step {params_bad}"
    )
    raise NonFiniteError(
        f"training stopped: {what} (not a finite number); nothing was exported and {kept}. "
        "Check the learning rates and guidance scale, or clip gradients (-O0 turns PGC on)"
    )


class Progress:
    """A rich progress bar: step, it/s, ETA, GPU memory, loss and fraction of pixels clipped."""

    def __init__(self, total: int, start: int, device: torch.device, quiet: bool) -> None:
        self.total, self.start, self.device, self.quiet = total, start, device, quiet
        self._bar: rich.progress.Progress | None = None
        self._task: rich.progress.TaskID | None = None
        self._t0 = time.perf_counter()

    def __enter__(self) -> Progress:
        if self.quiet:
            return self
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._bar = Progress(
            TextColumn("[bold]pgc-fast"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            transient=False,
        )
        self._bar.start()
        self._task = self._bar.add_task("train", total=self.total, completed=self.start, rate="", info="")
        return self

    def update(self, done: int, stats: dict[str, float]) -> None:
        if self._bar is None or self._task is None:  # quiet, or stopped (both are set together in __enter__)
            return
        n = done - self.start
        el = time.perf_counter() - self._t0
        rate = f"{n / el:.2f} it/s" if el > 0 and n / el >= 1 else (f"{el / n:.2f} s/it" if n else "")
        info = [f"loss {stats.get('loss', float('nan')):.4g}"]
        if "clip_frac" in stats:
            info.append(f"clipped {100 * stats['clip_frac']:.1f}%")
        if "psnr" in stats:
            info.append(f"psnr {stats['psnr']:.1f}")
        if self.device.type == "cuda":
            info.append(f"mem {torch.cuda.max_memory_allocated(self.device) / 2**30:.1f} GiB")
        self._bar.update(self._task, completed=done, rate=rate, info=" ".join(info))

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def __exit__(self, *exc: Any) -> None:
        self.stop()
