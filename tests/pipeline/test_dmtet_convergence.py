"""Shape convergence without diffusion weights (issue 17, item 6): DMTet, started from a sphere, is fitted to
silhouette and normal-map renders of a known target through the real loop (``run`` with the MSE objective, the CPU
renderer, the shape regularisers) and ends within 1.5 % of the target's bounding-box diagonal (symmetric Chamfer
distance).

The target is the demo vase, a surface of revolution with a waist and a neck: genus 0, not convex. A torus (the
issue's example) cannot be reached from a sphere by these losses: the silhouette's gradients live on the render's
existing edges and the normal map's only tilt faces, so nothing can open the hole where the sphere covers it.
"""

from __future__ import annotations

import numpy as np
import pytest
import shapes
import torch

from pgc_fast import config as C
from pgc_fast.apps.demo import make_demo_mesh
from pgc_fast.mesh import Mesh, Normalization, save_mesh
from pgc_fast.render import orbit_cameras
from pgc_fast.render.renderer import MeshRenderer, RenderMesh
from pgc_fast.train.objectives import MSEObjective
from pgc_fast.train.trainer import run

pytestmark = pytest.mark.usefixtures("one_thread")

RES = 64
VIEWS = 16


def _target() -> Mesh:
    vase = make_demo_mesh(48, 32)
    return Mesh(vertices=Normalization.fit(vase.vertices, 0.7).apply(vase.vertices), faces=vase.faces)


def _renders(mesh: Mesh) -> tuple[object, torch.Tensor, torch.Tensor]:
    """(cameras, normal-map images [N,3,R,R] on white, silhouettes [N,1,R,R]) of ``mesh`` from VIEWS orbit views."""
    theta = [45.0 + 90.0 * ((5 * i) % VIEWS) / (VIEWS - 1) for i in range(VIEWS)]
    phi = [360.0 * i / VIEWS for i in range(VIEWS)]
    cams = orbit_cameras(2.2, theta, phi, 1.2 * RES, RES)
    rm = RenderMesh(vertices=torch.from_numpy(mesh.vertices), faces=torch.from_numpy(mesh.faces))
    with torch.no_grad():
        out = MeshRenderer("cpu").render(
            rm, cams, torch.ones(rm.vertices.shape[0], 3), background=1.0, shading="normal"
        )
    return cams, out.image, out.mask


def test_dmtet_converges_from_a_sphere_to_the_target(tmp_path):
    target = _target()
    cams, images, masks = _renders(target)
    save_mesh(shapes.sphere(0.6), tmp_path / "sphere.ply")
    iters = 150
    cfg = C.override(
        C.RunConfig(),
        **{
            "mesh.path": str(tmp_path / "sphere.ply"),
            "mesh.shape": "dmtet",
            "mesh.tet_res": 48,
            "mesh.sdf_init": "direct",
            "mesh.lambda_smooth": 0.1,
            "mesh.smooth_iters": iters,
            "render.resolution": RES,
            "render.backend": "cpu",
            "render.shading": "normal",
            "optim.objective": "mse",
            "optim.iters": iters,
            "optim.batch_size": 4,
            "optim.lr_geometry": 3e-3,
            # a field no finer than the grid: finer hash levels are per-vertex parameters here, noise to the fit
            "texture.field_levels": 8,
            "texture.field_log2_table_size": 14,
            "texture.field_finest_resolution": 64,
            "output.root": "",
            "output.workspace": str(tmp_path / "ws"),
            "output.val_every": 0,
            "output.ckpt_every": 0,
            "output.turntable_frames": 0,
            "output.save_mesh": False,
            "output.report": False,
            "runtime.device": "cpu",
        },
    )
    start = shapes.chamfer(shapes.as_tensors(shapes.sphere(0.6)), shapes.as_tensors(target))
    result = run(cfg, objective=MSEObjective(images, cams, masks=masks), quiet=True)
    final = result.geometry.render_mesh()  # the exported surface: finalised, floaters removed
    diag = float(np.linalg.norm(target.vertices.max(0) - target.vertices.min(0)))
    d = shapes.chamfer((final.vertices, final.faces), shapes.as_tensors(target))
    assert d <= 0.015 * diag, (
        f"Chamfer {d:.4f} > 1.5 % of the diagonal ({0.015 * diag:.4f}); from the sphere {start:.4f}"
    )
    h = result.metrics["history"]
    assert np.mean(h["loss"][-10:]) < 0.5 * np.mean(h["loss"][:10])
