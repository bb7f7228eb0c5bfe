"""The run directory: the one workspace check, its creation, and config.yaml."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from pgc_fast import config as C


class WorkspaceExistsError(FileExistsError):
    """The workspace already holds a run and neither --force nor --resume was given."""


def check_workspace(cfg: C.RunConfig) -> None:
    """The one workspace check, run before anything is loaded or written (a launcher runs it once for all ranks):
    an existing non-empty workspace needs --force or --resume, and --resume needs a checkpoint."""
    ws = Path(cfg.workspace_path)
    if ws.exists() and any(ws.iterdir()) and not cfg.output.resume and not cfg.output.force:
        raise WorkspaceExistsError(
            f"workspace {str(ws)!r} already exists and is not empty; pass --force to overwrite it "
            f"or --resume to continue its run"
        )
    if cfg.output.resume and not (ws / "checkpoints").is_dir():
        raise FileNotFoundError(f"run(): --resume given but {str(ws / 'checkpoints')!r} has no checkpoint")


def prepare_workspace(cfg: C.RunConfig) -> Path:
    """:func:`check_workspace`, then create the workspace (emptied first under --force)."""
    check_workspace(cfg)
    ws = Path(cfg.workspace_path)
    if ws.exists() and any(ws.iterdir()) and not cfg.output.resume:
        shutil.rmtree(ws)  # --force
    ws.mkdir(parents=True, exist_ok=True)
    return ws


def run_config_yaml(cfg: C.RunConfig) -> str:
    import yaml

    commit = None
    with contextlib.suppress(Exception):
        import subprocess

        commit = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=os.path.dirname(__file__)
            ).stdout.strip()
            or None
        )
    import pgc_fast

    return yaml.safe_dump(
        {"pgc_fast": pgc_fast.__version__, "commit": commit, "config": C.to_dict(cfg)}, sort_keys=False
    )
