"""The run directory: the one workspace check, its creation, and config.yaml."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from pathlib import Path

from pgc_fast import config as C
from pgc_fast.export.files import is_temp_name, write_text_atomic
from pgc_fast.train.checkpoint import has_checkpoint


class WorkspaceExistsError(FileExistsError):
    """The workspace already holds a run and neither --force nor --resume was given."""


# What a run writes before its first checkpoint. A workspace holding only these (and temporary files of an
# interrupted write) and no checkpoint has nothing to lose: the run stopped before it could be resumed.
_BEFORE_FIRST_CHECKPOINT = {"config.yaml", "validation", "checkpoints"}


def _restartable(ws: Path) -> bool:
    """Whether ``ws`` holds nothing a rerun would lose: no checkpoint, only what a run writes before its first."""
    return not has_checkpoint(ws / "checkpoints") and all(
        p.name in _BEFORE_FIRST_CHECKPOINT or is_temp_name(p.name) for p in ws.iterdir()
    )


def check_workspace(cfg: C.RunConfig) -> str | None:
    """The one workspace check, run before anything is loaded or written (a launcher runs it once for all ranks).

    An existing non-empty workspace needs --force or --resume, unless it holds nothing to lose (a run stopped
    before its first checkpoint: restarted); --resume of a workspace without a checkpoint starts the run (it
    stopped before its first checkpoint, or never started), unless the workspace holds files a run does not write.
    Returns a note to print when the run is restarted, None otherwise."""
    ws = Path(cfg.workspace_path)
    busy = ws.exists() and any(ws.iterdir())
    if cfg.output.force or not busy:
        return f"--resume: {str(ws)!r} holds no run yet; starting it" if cfg.output.resume and not busy else None
    if cfg.output.resume:
        if has_checkpoint(ws / "checkpoints"):
            return None
        if _restartable(ws):
            return f"--resume: {str(ws)!r} has no checkpoint yet (its run stopped before the first one); starting again"
        raise FileNotFoundError(
            f"run(): --resume given but {str(ws / 'checkpoints')!r} has no checkpoint and the workspace holds other "
            f"files; pass --force to overwrite it"
        )
    if _restartable(ws):
        return (
            f"workspace {str(ws)!r} holds no checkpoint (its run stopped before the first one), so nothing to lose: "
            f"starting again"
        )
    raise WorkspaceExistsError(
        f"workspace {str(ws)!r} already exists and is not empty; pass --force to overwrite it "
        f"or --resume to continue its run"
    )


def prepare_workspace(cfg: C.RunConfig) -> Path:
    """:func:`check_workspace`, then create the workspace: emptied first under --force, cleared of a stopped run's
    leftovers when it had no checkpoint."""
    note = check_workspace(cfg)
    ws = Path(cfg.workspace_path)
    if note is not None:
        print(f"note: {note}", file=sys.stderr)
    if ws.exists() and any(ws.iterdir()):
        if cfg.output.force and not cfg.output.resume:
            shutil.rmtree(ws)
        elif _restartable(ws):
            for p in ws.iterdir():
                shutil.rmtree(p) if p.is_dir() else p.unlink()
    ws.mkdir(parents=True, exist_ok=True)
    return ws


def write_config_yaml(ws: Path, cfg: C.RunConfig) -> Path:
    """``ws/config.yaml`` (atomically): the configuration, the package version and the git commit."""
    return write_text_atomic(ws / "config.yaml", run_config_yaml(cfg))


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
