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


SPREAD = [*ARGS, "--skip-step-table", "--spread", "2", "--noise-draws", "2", "--levers", "fp32+fp8"]


def _spread_rows(out: str) -> dict[str, list[str]]:
    rows = [ln.split("|")[1:-1] for ln in out.splitlines() if ln.startswith("| ours-") or ln.startswith("| orig-")]
    return {r[0].strip(): [c.strip() for c in r[1:]] for r in rows}


def test_spread_probe_feeds_both_pipelines_the_same_draws(mesh, capsys):
    """The spread table (issue 21): the original's float32 gradients equal ours on every (t, view, noise) draw,
    FP8 (through its float32 twin on the CPU) is measurably off, and the verdict follows the rule."""
    assert P.main([*SPREAD, *mesh]) == 0
    rows = _spread_rows(capsys.readouterr().out)
    assert float(rows["orig-fp32"][0]) <= 1e-4 and float(rows["orig-fp32"][1]) > 0.99999
    rel, cos, ratio = (float(rows["ours-fp32+fp8"][i]) for i in range(3))
    assert 1e-3 < rel < 2 and cos < 1 and ratio > 0.05 and rows["ours-fp32+fp8"][4] == "no: opt-in"


def test_spread_probe_notices_other_timesteps(mesh, monkeypatch, capsys):
    orig = P.SpreadProbe.original

    def shifted(self, precision):
        self.t = self.t + 5
        return orig(self, precision)

    monkeypatch.setattr(P.SpreadProbe, "original", shifted)
    assert P.main([*SPREAD, *mesh]) == 0
    assert float(_spread_rows(capsys.readouterr().out)["orig-fp32"][0]) > 1e-3
