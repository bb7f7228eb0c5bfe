"""benches/gpu_step_parity.py on the CPU (tiny-sdxl, float32): our step and the original's step
(pgc_fast.parity.original_step.OriginalStep) give the same latents, SDS gradient, clipped image gradient and texture
gradient on identical inputs — and the harness notices when the inputs differ."""

import os
import sys

import pytest

pytest.importorskip("diffusers")

BENCHES = os.path.join(os.path.dirname(__file__), "..", "..", "benches")
sys.path.insert(0, BENCHES)

import gpu_step_parity as P  # noqa: E402


@pytest.fixture(scope="module")
def mesh(tmp_path_factory):
    import numpy as np
    from PIL import Image

    from pgc_fast.apps.demo import make_demo_mesh
    from pgc_fast.mesh import save_mesh

    d = tmp_path_factory.mktemp("parity")
    save_mesh(make_demo_mesh(16, 8), d / "vase.obj")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)).save(d / "bg.png")  # the scenery background
    return ["--mesh", str(d / "vase.obj"), "--bg", str(d / "bg.png")]


ARGS = ["--device", "cpu", "--model", "tiny-sdxl", "--res", "64"]


def test_ours_matches_original_step(mesh, capsys):
    assert P.main([*ARGS, *mesh]) == 0
    assert "Overall: **pass**" in capsys.readouterr().out


def test_harness_catches_a_different_timestep(mesh, monkeypatch, capsys):
    ref = P.Harness.reference

    def shifted(self, precision):
        self.t = self.t + 5  # the original's step now sees other timesteps than ours
        return ref(self, precision)

    monkeypatch.setattr(P.Harness, "reference", shifted)
    assert P.main([*ARGS, *mesh]) == 1
    assert "FAIL" in capsys.readouterr().out
