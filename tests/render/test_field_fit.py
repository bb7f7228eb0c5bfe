"""The field's vertex-colour pre-fit per device (render/textures/field.py fit_schedule): CUDA keeps the original's
schedule and draws; the CPU fits fewer steps on fresh, smaller batches; progress is reported every step.
benches/cpu_field_fit.py measures the speed and the quality of both schedules."""

from __future__ import annotations

import math

import numpy as np
import torch

from pgc_fast.apps.demo import make_demo_mesh
from pgc_fast.mesh import Normalization
from pgc_fast.render.renderer import RenderMesh
from pgc_fast.render.textures import FieldTexture, field
from pgc_fast.render.textures.field import (
    CPU_FIT_POINTS,
    GPU_FIT_POINTS,
    FitPlan,
    fit_field_to_vertex_colors,
    fit_schedule,
    sample_surface,
    vertex_color_psnr,
)


def _vase() -> RenderMesh:
    m = make_demo_mesh(24, 12)
    norm = Normalization.fit(m.vertices)
    return RenderMesh(
        vertices=torch.from_numpy(norm.apply(np.asarray(m.vertices))).float(),
        faces=torch.from_numpy(np.asarray(m.faces)),
        colors=torch.from_numpy(np.asarray(m.colors)).float(),
    )


def _small_field() -> FieldTexture:
    torch.manual_seed(0)
    return FieldTexture(bound=1.0, num_levels=6, log2_table_size=10, finest_resolution=256)


def test_schedule_per_device():
    assert fit_schedule("cuda", 500) == FitPlan(500, GPU_FIT_POINTS, False, 1e-2)  # the original's
    plan = fit_schedule("cpu", 500)
    assert plan.steps == math.ceil(500 * field.CPU_STEP_FRACTION) < 500 and plan.resample
    assert plan.n_points == CPU_FIT_POINTS < GPU_FIT_POINTS and plan.lr == field.CPU_FIT_LR
    assert fit_schedule("cpu", 1).steps == 1 and fit_schedule("cpu", 0).steps == 0


def test_one_batch_fit_matches_the_original_procedure():
    """resample=False (the CUDA schedule) draws and steps exactly as the original's init_texture did."""
    mesh, gen = _vase(), torch.Generator().manual_seed(3)
    ours = _small_field()
    loss = fit_field_to_vertex_colors(ours, mesh, steps=4, n_points=512, generator=gen)
    twin = _small_field()
    gen = torch.Generator().manual_seed(3)
    pts, fid, bary = sample_surface(mesh.vertices, mesh.faces, 512, gen)
    target = (mesh.colors[mesh.faces[fid]] * bary[..., None]).sum(1).clamp(0.03, 0.97)
    x = torch.cat(
        [pts + torch.randn(pts.shape, generator=gen) * 0.04, pts + torch.randn(pts.shape, generator=gen) * 0.4]
    )
    y = torch.cat([target, target])
    opt = torch.optim.Adam(twin.parameters(), lr=1e-2, betas=(0.9, 0.99), eps=1e-15)
    for _ in range(4):
        opt.zero_grad()
        ref = ((twin(x) - y) ** 2).mean(0).sum()
        ref.backward()
        opt.step()
    assert loss == float(ref.detach())
    for a, b in zip(ours.parameters(), twin.parameters(), strict=True):
        assert torch.equal(a, b)


def test_fresh_points_every_step_and_progress(monkeypatch):
    mesh, calls, seen = _vase(), [], []
    real = field.sample_surface

    def spy(*a, **k):
        calls.append(a[2])
        return real(*a, **k)

    tex = _small_field()
    before = vertex_color_psnr(tex, mesh, generator=torch.Generator().manual_seed(1))
    monkeypatch.setattr(field, "sample_surface", spy)
    tex.init_from_vertex_colors(
        mesh, None, steps=40, generator=torch.Generator().manual_seed(0), progress=lambda *a: seen.append(a)
    )
    steps = fit_schedule("cpu", 40).steps
    assert calls[:steps] == [CPU_FIT_POINTS] * steps  # one fresh batch per step (then the PSNR's)
    assert [s for s, _, _ in seen] == list(range(1, steps + 1)) and all(t == steps for _, t, _ in seen)
    assert all(torch.is_tensor(v) and v.dim() == 0 for _, _, v in seen)
    after = vertex_color_psnr(tex, mesh, generator=torch.Generator().manual_seed(1))
    assert after > before + 5, (before, after)


def test_scene_prints_progress(tmp_path, capsys):
    from pgc_fast import config as C
    from pgc_fast.mesh import save_mesh
    from pgc_fast.train.geometry import Scene

    save_mesh(make_demo_mesh(12, 6), tmp_path / "v.ply")
    cfg = C.override(
        C.RunConfig(),
        **{
            "mesh.path": str(tmp_path / "v.ply"),
            "texture.field_levels": 4,
            "texture.field_log2_table_size": 10,
            "render.backend": "cpu",
        },
    )
    scene = Scene.from_config(cfg, torch.device("cpu"))
    assert scene.fit_vertex_colors(20, show_progress=True)
    err = capsys.readouterr().err
    steps = fit_schedule("cpu", 20).steps
    assert f"init texture from vertex colours: {steps}/{steps} steps, loss" in err
    assert 2 <= len(err.splitlines()) <= 11
