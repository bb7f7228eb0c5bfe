"""nvdiffrast backend against the cpu backend on a small scene (CUDA only; the full-size comparison with timings
is benches/gpu_render_parity.py)."""

from __future__ import annotations

import pytest
import torch

from pgc_fast.render.backends import CpuBackend, get_backend
from pgc_fast.render.camera import orbit_cameras
from render_helpers import icosphere

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def backends():
    pytest.importorskip("nvdiffrast")
    pytest.importorskip("pgc_fast.mesh", reason="the cpu backend's visibility pass needs the Rust extension")
    return get_backend("nvdiffrast", "cuda"), CpuBackend()


def test_backends_agree(backends):
    nv, cpu = backends
    V, Fc = icosphere(3)
    V, Fc = V.cuda(), Fc.cuda()
    cams = orbit_cameras([2.2, 2.5], [60.0, 80.0], [20.0, 200.0], 90.0, 96, device="cuda")
    clip = cams.to_clip(V)
    r_nv, r_cpu = nv.rasterize(clip, Fc, (96, 96)), cpu.rasterize(clip, Fc, (96, 96))
    assert (r_nv[..., 3] != r_cpu[..., 3]).float().mean() < 0.01
    same = (r_nv[..., 3] == r_cpu[..., 3]) & (r_nv[..., 3] > 0)
    assert torch.allclose(r_nv[same][:, :3], r_cpu[same][:, :3], atol=1e-4)
    attr = torch.rand(V.shape[0], 4, device="cuda")
    assert torch.allclose(nv.interpolate(attr, r_nv, Fc), cpu.interpolate(attr, r_nv, Fc), atol=1e-5)
    tex = torch.rand(1, 32, 32, 3, device="cuda")
    uv = nv.interpolate(attr[:, :2].contiguous(), r_nv, Fc) * 1.2 - 0.1
    for mode in ("wrap", "clamp"):
        assert torch.allclose(
            nv.texture(tex, uv, boundary_mode=mode), cpu.texture(tex, uv, boundary_mode=mode), atol=1e-4
        )
    img = nv.interpolate(attr[:, :3].contiguous(), r_nv, Fc)
    cp_nv, cp_cpu = clip.clone().requires_grad_(True), clip.clone().requires_grad_(True)
    a_nv, a_cpu = nv.antialias(img, r_nv, cp_nv, Fc), cpu.antialias(img, r_nv, cp_cpu, Fc)
    assert (a_nv - a_cpu).abs().mean() < 1e-4
    w = torch.rand_like(img)
    (a_nv * w).sum().backward()
    (a_cpu * w).sum().backward()
    cos = torch.nn.functional.cosine_similarity(cp_nv.grad.flatten(), cp_cpu.grad.flatten(), dim=0)
    assert cos > 0.99
