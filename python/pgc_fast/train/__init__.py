"""Training: ``run(cfg)`` (train.trainer) composes restore-or-init, fit and export; the step (train.step),
objectives (train.objectives), the geometry being textured (train.geometry), checkpoints (train.checkpoint),
metrics (train.metrics), runtime state (train.runtime), the workspace (train.workspace) and data-parallel
helpers (train.distributed).

May import: config, mesh, fields, render, guidance (lazily, in objectives), export.
"""

from __future__ import annotations

from pgc_fast.train.objectives import (
    GuidanceObjective,
    LossOutput,
    MSEObjective,
    Objective,
    RunContext,
)
from pgc_fast.train.trainer import RunResult, run
from pgc_fast.train.workspace import WorkspaceExistsError, prepare_workspace

__all__ = [
    "GuidanceObjective",
    "LossOutput",
    "MSEObjective",
    "Objective",
    "RunContext",
    "RunResult",
    "WorkspaceExistsError",
    "prepare_workspace",
    "run",
]
