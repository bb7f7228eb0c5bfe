"""Builders shared by the pipeline tests (tests/pipeline/conftest.py wraps them as fixtures) and by the torchrun
workers of tests/pipeline/test_distributed.py, which run outside pytest and import this module directly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from pgc_fast import config as C
from pgc_fast.apps.demo import make_demo_mesh
from pgc_fast.mesh import save_mesh
from pgc_fast.render import orbit_cameras
from pgc_fast.train.objectives import MSEObjective

# Score distillation from the built-in tiny-sd model with PGC on, small enough for the CPU.
TINY_GUIDANCE: dict[str, Any] = {
    "optim.objective": "guidance",
    "guidance.text": "a striped vase",
    "guidance.model": "tiny-sd",
    "guidance.guidance_scale": 7.5,
    "guidance.pgc_tau": 0.01,
    "render.resolution": 32,
    "optim.iters": 4,
}


def vase_mesh(root: Path, segments: int = 12, rings: int = 6, name: str = "vase.ply") -> Path:
    """The demo vase saved under ``root`` (once)."""
    path = root / name
    if not path.exists():
        save_mesh(make_demo_mesh(segments, rings), path)
    return path


def tiny_config(root: Path, ws: str, kind: str, **over: Any) -> C.RunConfig:
    """A seconds-long CPU run on the vase: 16² renders, 32² textures, MSE objective, 6 steps, no exports."""
    base = {
        "mesh.path": str(vase_mesh(root)),
        "mesh.canonicalize": True,
        "texture.kind": kind,
        "texture.uv_resolution": 32,
        "texture.uv_levels": 2,
        "texture.export_resolution": 32,
        "render.resolution": 16,
        "render.backend": "cpu",
        "render.shading": "random",
        "texture.pos_perturb": kind == "field",
        "optim.objective": "mse",
        "optim.iters": 6,
        "optim.batch_size": 2,
        "optim.lr_texture": 1e-2,
        "output.root": "",
        "output.workspace": str(root / ws),
        "output.val_every": 2,
        "output.ckpt_every": 0,
        "output.turntable_frames": 0,
        "output.save_mesh": False,
        "output.report": False,
        "runtime.device": "cpu",
        "texture.field_levels": 8,
        "texture.field_log2_table_size": 12,
    }
    base.update(over)
    return C.override(C.RunConfig(), **base)


def mse_objective(views: int = 4) -> MSEObjective:
    """``views`` known cameras (4 or 8) with random 16² targets."""
    theta = [60.0, 70.0, 80.0, 90.0] * (views // 4)
    phi = [360.0 * i / views for i in range(views)]
    cams = orbit_cameras(2.2, theta, phi, 18.0, 16)
    g = torch.Generator().manual_seed(1)
    return MSEObjective(torch.rand(views, 3, 16, 16, generator=g), cams)


def stopped_and_resumed(cfg: C.RunConfig, stop_after: int = 2, objective: Any = None) -> Any:
    """Run ``cfg`` until step ``stop_after``, then resume it from its checkpoint to the end; the resumed run's
    result. ``objective``: a zero-argument factory (each run gets a fresh objective), or None for the guidance."""
    from pgc_fast.train.trainer import run

    make = objective or (lambda: None)
    run(cfg, objective=make(), quiet=True, stop_after=stop_after)
    return run(C.override(cfg, **{"output.resume": True}), objective=make(), quiet=True)


class _Payload:
    """Unpickling this runs ``code`` (what a crafted checkpoint or model file would do)."""

    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (exec, (self.code,))


def malicious_pickle(marker: Path, zip_format: bool = True) -> bytes:
    """A pickle that creates ``marker`` when loaded: torch.save's zip format (``zip_format``) or a bare pickle."""
    import io
    import pickle

    payload = {"step": 99, "texture": _Payload(f"open({str(marker)!r}, 'w').write('code ran')")}
    if not zip_format:
        return pickle.dumps(payload, protocol=2)
    buf = io.BytesIO()
    torch.save(payload, buf)
    return buf.getvalue()
