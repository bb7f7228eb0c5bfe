"""Render-only test of a trained workspace (the original's ``--test``): load its latest checkpoint, render the
100-view RGB / depth / normal videos and frames and ``poses.npy``, the validation view, and re-export the mesh.
Nothing is trained; the checkpoints are read, never written.

Outputs (``<workspace>/results/``, the original's names with our step numbering)::

    step<N>_rgb.mp4, step<N>_depth.mp4, step<N>_normal.mp4   100 frames at output.fps (25), imageio quality 8
    rgb/0000.png …, depth/0000.png …, normal/0000.png …      the frames
    poses.npy                                              float32 [100, 4, 4] camera-to-world of the frames
    validation/step<N>_rgb.png                             the run's validation view, byte-identical on the CPU

Frames as the original's test path: φ = i/100·360°, θ = 60°, mean radius, focal = mean focal_range·H, unlit
albedo, white background, at ``output.turntable_resolution`` (512). Depth frames are the camera-space z,
normalised per frame to [0, 1] over the whole image, background (z = 0) included, so the background is black and
far is bright (the original's). Normal frames are ``(n + 1)/2`` of the unit world normal facing the camera, on
white. Poses use pgc-fast's right-handed cameras (render/camera.py), not the original's mirrored ones. Latent
mode decodes every RGB frame (train/latent.py); the exported texture is baked from decoded views.

``results/`` is assembled in a hidden staging folder and swapped in whole, so a kill leaves the previous results
or the new ones, never a mix; the mesh export is atomic file by file (export/mesh.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pgc_fast import config as C
from pgc_fast.export.files import temp_name
from pgc_fast.export.views import to_uint8, write_validation
from pgc_fast.train import state_file as S
from pgc_fast.train.checkpoint import CheckpointError, checkpoint_files, has_checkpoint, read_latest_checkpoint
from pgc_fast.train.geometry import Scene
from pgc_fast.train.preflight import preflight
from pgc_fast.train.runtime import resolve_device

__all__ = ["TEST_OVERRIDABLE", "TEST_VIEWS", "TestResult", "load_test_state", "run_test", "test_config"]

TEST_VIEWS = 100
"""Frames of the test render (the original's), unless output.turntable_frames is given on the command line."""
TEST_OVERRIDABLE = frozenset(
    {
        "output.workspace",
        "output.root",
        "output.turntable_frames",
        "output.turntable_resolution",
        "output.fps",
        "output.save_mesh",
        "runtime.device",
        "runtime.gpus",
        "runtime.deterministic",
        "render.backend",
        "texture.export_resolution",
        "texture.dilation",
        "texture.latent_bake_views",
        "mesh.path",
        "mesh.allow_external_files",
        "guidance.model",
        "guidance.vae",
        "guidance.cache_dir",
        "guidance.token_file",
    }
)
"""Settings a test may change: where things are and how much is rendered and exported, never what was trained."""


@dataclasses.dataclass
class TestResult:
    """What a test render wrote: the workspace, the checkpoint's step and the files by name."""

    workspace: Path
    step: int
    files: dict[str, Path]


def load_test_state(ws: Path, ckpt: str = "latest") -> dict[str, Any]:
    """The checkpoint to render: the newest intact one of ``ws/checkpoints`` (``latest``), or the file ``ckpt``
    (a path, or a name inside ``ws/checkpoints``). A workspace without one is a CheckpointError (one line)."""
    ckpt_dir = ws / "checkpoints"
    if ckpt == "latest":
        if not has_checkpoint(ckpt_dir):
            raise CheckpointError(
                f"--test: {str(ws)!r} has no checkpoint to render (no {str(ckpt_dir / 'step*.safetensors')!r}); "
                f"train it first"
            )
        state, notes = read_latest_checkpoint(ckpt_dir)
        for n in notes:
            print(f"note: {n}", file=sys.stderr)
        assert state is not None  # has_checkpoint: a damaged-only folder raised above
        return state
    path = Path(ckpt) if Path(ckpt).is_file() else ckpt_dir / ckpt
    if not path.is_file() or path not in checkpoint_files(path.parent):
        raise CheckpointError(f"--ckpt {ckpt}: no such pgc-fast checkpoint (step*.safetensors) in {str(ckpt_dir)!r}")
    try:
        state = S.loads(path.read_bytes())
    except CheckpointError as e:
        raise CheckpointError(f"--ckpt {ckpt}: {e}") from None
    if not isinstance(state, dict) or not isinstance(state.get("texture"), dict) or "config" not in state:
        raise CheckpointError(f"--ckpt {ckpt}: not a complete pgc-fast training state")
    return state


def test_config(state: dict[str, Any], overrides: dict[str, Any]) -> C.RunConfig:
    """The checkpoint's configuration with the :data:`TEST_OVERRIDABLE` ``overrides`` (dotted names) applied."""
    saved = state.get("config")
    if not isinstance(saved, dict):
        raise CheckpointError("--test: the checkpoint holds no configuration")
    try:
        cfg = C.from_dict(saved)
    except (C.ConfigError, TypeError) as e:
        raise CheckpointError(f"--test: the checkpoint's configuration does not load ({e})") from None
    bad = sorted(set(overrides) - TEST_OVERRIDABLE)
    if bad:
        raise C.ConfigError([f"--test renders the run as trained: {k} cannot change" for k in bad])
    return C.override(cfg, **{k: v for k, v in overrides.items() if k != "output.turntable_frames"})


def restore_scene(cfg: C.RunConfig, state: dict[str, Any], device: torch.device) -> Scene:
    """The scene of ``cfg`` holding the checkpoint's texture (and geometry, when the checkpoint has one), with the
    latent decoder loaded in latent mode."""
    scene = Scene.from_config(cfg, device)
    try:
        scene.texture.load_state_dict(state["texture"])
        if isinstance(state.get("geometry"), dict):
            scene.geometry.load_state_dict(state["geometry"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        msg = str(e).splitlines()[0][:200] if str(e) else ""
        raise CheckpointError(
            f"--test: the checkpoint does not fit its configuration ({type(e).__name__}: {msg})"
        ) from None
    scene.texture.eval()
    finalize = getattr(scene.geometry, "finalize", None)  # a shape geometry fixes its final surface (DMTet)
    if callable(finalize):
        finalize()
    if cfg.guidance.latent:
        from pgc_fast.guidance import load_guidance
        from pgc_fast.train.latent import LatentDecoder

        iters = int(state.get("schedule_iters") or cfg.optim.iters)
        g = load_guidance(cfg.guidance, device=device, dtype=cfg.optim.precision, seed=cfg.optim.seed, iters=iters)
        scene.decoder = LatentDecoder.from_guidance(g)
    return scene


def run_test(cfg_now: C.RunConfig, overrides: dict[str, Any], *, ckpt: str = "latest") -> TestResult:
    """Render and export the run in ``cfg_now.workspace_path`` from its checkpoint (module docstring).

    ``overrides``: dotted config fields given on the command line (:data:`TEST_OVERRIDABLE` only); the
    workspace's place is always ``cfg_now``'s."""
    ws = Path(cfg_now.workspace_path)
    state = load_test_state(ws, ckpt)
    where = {"output.workspace": cfg_now.output.workspace, "output.root": cfg_now.output.root}
    cfg = test_config(state, {**overrides, **where})
    one_gpu = cfg.runtime.gpus.split(",")[0].strip() or "0"  # one process renders: the first listed GPU
    cfg = C.override(cfg, **{"runtime.gpus": one_gpu})
    C.validate(cfg)
    preflight(cfg)  # device and mesh, one line each, before anything is loaded or written
    n_views = int(overrides.get("output.turntable_frames", TEST_VIEWS))
    step = int(state["step"])
    scene = restore_scene(cfg, state, resolve_device(cfg))
    stage = temp_name(ws / "results")
    shutil.rmtree(stage, ignore_errors=True)  # left by a kill during an earlier test
    try:
        with torch.no_grad():
            files = dict(write_validation(scene, cfg, stage / "validation", step))
            files.update(write_test_views(scene, cfg, stage, step, n_views))
            if cfg.output.save_mesh:
                files.update(scene.export(ws, cfg))
        _swap_in(stage, ws / "results")
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    files = {k: (ws / "results" / v.relative_to(stage) if v.is_relative_to(stage) else v) for k, v in files.items()}
    return TestResult(workspace=ws, step=step, files=files)


def _swap_in(stage: Path, results: Path) -> None:
    """Replace ``results`` by ``stage`` (two renames: a kill between them leaves no results/, never a mix)."""
    old = temp_name(results.with_name(results.name + "-old"))
    shutil.rmtree(old, ignore_errors=True)
    if results.exists():
        results.rename(old)
    stage.rename(results)
    shutil.rmtree(old, ignore_errors=True)


def _frames(out: Any) -> dict[str, list[np.ndarray]]:
    """uint8 RGB, depth (grey) and normal frames of one rendered batch (module docstring)."""
    rgb = [to_uint8(x) for x in out.image]
    depth = []
    for d in out.depth[:, 0].float():
        lo, hi = d.min(), d.max()
        depth.append((((d - lo) / (hi - lo + 1e-6)).cpu().numpy() * 255 + 0.5).astype(np.uint8))
    vis = (out.normal + 1) * 0.5 * out.mask + (1 - out.mask)
    return {"rgb": rgb, "depth": depth, "normal": [to_uint8(x) for x in vis]}


def write_test_views(scene: Any, cfg: C.RunConfig, out_dir: Path, step: int, n_views: int) -> dict[str, Path]:
    """The ``n_views`` turntable frames as PNGs and three videos, and ``poses.npy`` (module docstring)."""
    from PIL import Image

    from pgc_fast.render import turntable

    if n_views == 0:
        return {}
    o, r = cfg.output, cfg.render
    cams = turntable(
        n_views, height=o.turntable_resolution, radius=sum(r.radius_range) / 2,
        focal_ratio=sum(r.focal_range) / 2, device=scene.device,
    )  # fmt: skip
    kinds = ("rgb", "depth", "normal")
    for k in kinds:
        (out_dir / k).mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    with contextlib.ExitStack() as stack:
        writers = _video_writers(stack, out_dir, step, o.fps, files)
        for i in range(0, n_views, 8):
            frames = _frames(scene.render(cams[i : i + 8], train=False))
            for k in kinds:
                for j, f in enumerate(frames[k]):
                    Image.fromarray(f).save(out_dir / k / f"{i + j:04d}.png")
                    if writers:
                        writers[k].append_data(f if f.ndim == 3 else np.repeat(f[..., None], 3, axis=2))
    np.save(out_dir / "poses.npy", cams.c2w.cpu().numpy().astype(np.float32))
    files.update({f"test_{k}_frames": out_dir / k for k in kinds})
    files["test_poses"] = out_dir / "poses.npy"
    return files


def _video_writers(stack: contextlib.ExitStack, out_dir: Path, step: int, fps: int, files: dict[str, Path]) -> dict:
    """imageio-ffmpeg writers of the three videos, or {} (with a note) when no ffmpeg backend is installed."""
    import imageio.v2 as imageio

    writers = {}
    try:
        for k in ("rgb", "depth", "normal"):
            path = out_dir / f"step{step:07d}_{k}.mp4"
            writers[k] = stack.enter_context(imageio.get_writer(path, fps=fps, quality=8, macro_block_size=1))
            files[f"test_{k}_mp4"] = path
    except Exception as e:  # noqa: BLE001 - no ffmpeg backend (imageio raises several types): frames only
        for k in ("rgb", "depth", "normal"):
            files.pop(f"test_{k}_mp4", None)
        print(f"note: --test writes no videos (no ffmpeg backend: {type(e).__name__}: {e})", file=sys.stderr)
        return {}
    return writers
