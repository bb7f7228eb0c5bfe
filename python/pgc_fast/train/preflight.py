"""Checks that need this machine or the input's contents, run after ``config.validate`` and before anything is
created or loaded (workspace, models): the device, the GPU ids, that the mesh loads with usable faces, and that a
PBR run's environment map is a readable 2:1 HDR image.
Each failure is one :class:`PreflightError` whose message is one line naming the flag to change."""

from __future__ import annotations

import numpy as np
import torch

from pgc_fast import config as C
from pgc_fast.train import distributed as D

__all__ = ["PreflightError", "check_environment", "check_machine", "check_mesh", "machine_notes", "preflight"]


class PreflightError(RuntimeError):
    """The run cannot start on this machine or with this input; the message says why, in one line."""


def _cuda_count() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def machine_notes(cfg: C.RunConfig) -> list[str]:
    """What this machine cannot do of ``cfg``'s device request, one sentence each (empty when it can)."""
    return _device_notes(cfg) + _fp8_notes(cfg)


def _fp8_notes(cfg: C.RunConfig) -> list[str]:
    """--guidance.fp8 needs FP8 tensor cores with row-wise scaled products (compute capability >= 9.0)."""
    if not cfg.guidance.fp8:
        return []
    n = _cuda_count()
    ids = [int(x) for x in cfg.runtime.gpus.split(",") if x.strip().isdigit()] or [0]
    if cfg.runtime.device == "cpu" or n == 0:
        return [
            "guidance.fp8 (--guidance.fp8) needs a CUDA GPU of compute capability 9.0 or newer (H100); "
            "this run has none: drop --guidance.fp8"
        ]
    for i in ids if not D.launched_by_torchrun() else [torch.cuda.current_device()]:
        if i < n and torch.cuda.get_device_capability(i) < (9, 0):
            cap = ".".join(map(str, torch.cuda.get_device_capability(i)))
            return [
                f"guidance.fp8 (--guidance.fp8) needs a GPU of compute capability 9.0 or newer (H100); GPU {i} "
                f"({torch.cuda.get_device_name(i)}) has {cap}: drop --guidance.fp8"
            ]
    return []


def _device_notes(cfg: C.RunConfig) -> list[str]:
    rt, n = cfg.runtime, _cuda_count()
    ids = [int(x) for x in rt.gpus.split(",") if x.strip().isdigit()]
    if rt.device == "cpu":
        return []
    if n == 0:
        if rt.device == "cuda":
            return [
                f"runtime.device=cuda (--device cuda): torch {torch.__version__} sees no CUDA device on this machine; "
                "use --device cpu"
            ]
        if len(ids) > 1:
            return [
                f"--gpus {rt.gpus} asks for {len(ids)} GPUs but torch sees no CUDA device on this machine; "
                "use --gpus 0 (one process), or --device cpu to run that many CPU processes"
            ]
        return []
    if D.launched_by_torchrun():  # the launcher checked the ids; workers see only theirs (CUDA_VISIBLE_DEVICES)
        return []
    bad = [i for i in ids if i >= n]
    if bad:
        return [f"--gpus {rt.gpus}: this machine has {n} CUDA device(s), ids 0 to {n - 1}; no device {bad[0]}"]
    return []


def check_machine(cfg: C.RunConfig) -> None:
    """Raise :class:`PreflightError` when this machine cannot run ``cfg``'s device and GPU request."""
    notes = machine_notes(cfg)
    if notes:
        raise PreflightError(notes[0])


def check_mesh(cfg: C.RunConfig) -> None:
    """Load the mesh once (a few ms for 62k faces), so that a malformed one is refused before anything else; for
    DMTet also that it can seed the grid (pgc_fast.train.dmtet.check_source_mesh); for a PBR run that the mesh's own
    UV layout leaves room for tangents."""
    import warnings

    from pgc_fast.mesh import Normalization, load_mesh, vertex_tangents

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the run's own load prints them
            mesh = load_mesh(cfg.mesh.path, allow_external_files=cfg.mesh.allow_external_files)
        if cfg.mesh.shape == "dmtet":
            from pgc_fast.train.dmtet import check_source_mesh

            fit = cfg.mesh.canonicalize and bool(np.isfinite(mesh.vertices).all())
            norm = Normalization.fit(mesh.vertices) if fit else Normalization.identity()
            check_source_mesh(mesh, norm, cfg.mesh.tet_res)
        if cfg.texture.material == "pbr" and mesh.uvs is not None:  # its normal map follows the mesh's own UVs
            vertex_tangents(mesh, cfg.mesh.path)
    except (ValueError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise PreflightError(f"mesh.path (--mesh_path): cannot use {cfg.mesh.path!r}: {first}") from e


def check_environment(cfg: C.RunConfig) -> None:
    """A PBR run's environment map decodes and is a 2:1 lat-long (render/envlight.py, load_environment)."""
    if cfg.texture.material != "pbr" or cfg.pbr.env_path is None:
        return
    from pgc_fast.render.envlight import load_environment

    try:
        load_environment(cfg.pbr.env_path)
    except (ValueError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise PreflightError(f"pbr.env_path (--env_path): cannot use {cfg.pbr.env_path!r}: {first}") from e


def preflight(cfg: C.RunConfig) -> None:
    """:func:`check_machine`, :func:`check_mesh`, then :func:`check_environment`."""
    check_machine(cfg)
    check_mesh(cfg)
    check_environment(cfg)
