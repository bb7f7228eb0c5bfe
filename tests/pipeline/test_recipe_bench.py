"""benches/gpu_recipe.py on the CPU: it runs `pgc-fast generate` in a fresh process, reads the phase split of the
run's metrics.json and projects the recipe's 1,200 iterations from it (issue 21)."""

import json
import os
import sys
import types

import pytest

pytest.importorskip("diffusers")

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benches"))

import gpu_recipe as R


def test_projection_adds_steps_validations_and_checkpoints():
    out = types.SimpleNamespace(val_every=400, ckpt_every=400)
    cfg = types.SimpleNamespace(output=out)
    assert R._counts(cfg, 60) == (0, 1) and R._counts(cfg, 1200) == (2, 3)
    m = {"wall_s": 100.0, "phases_s": {"steps": 59 * 0.3, "checkpoint": 2.0, "final_views": 1.5}}
    # 1140 more steps at 0.3 s, 2 validations at the final views' 1.5 s, 2 more checkpoints at 2 s
    assert R.projection(m, cfg, 60, 1200) == pytest.approx(100 + 1140 * 0.3 + 2 * 1.5 + 2 * 2.0)


def test_fast_recipe_runs_generate_and_reports_the_phases(tmp_path, capsys):
    from pgc_fast.apps.demo import make_demo_mesh
    from pgc_fast.mesh import save_mesh

    save_mesh(make_demo_mesh(12, 6), tmp_path / "m.obj")
    flags = "--res_fine 32 --output.turntable_frames 2 --output.turntable_resolution 32 --texture.export_resolution 64"
    argv = ["--recipe", "fast", "--model", "tiny-sd", "--device", "cpu", "--iters", "2", "--runs", "1"]
    argv += ["--mesh", str(tmp_path / "m.obj"), "--flags", flags, "--out", str(tmp_path / "out")]
    assert R.main(argv) == 0
    text = (tmp_path / "out" / "gpu_recipe_fast.md").read_text()
    assert "| cold: fresh caches, 2 it |" in text and "texture-fast" in text
    m = json.loads((tmp_path / "out" / "metrics_fast_run1.json").read_text())
    assert m["steps"] == 2 and m["wall_s"] >= m["total_s"] > 0
    assert set(m["phases_grouped_s"]) == {"load", "compile", "steps", "export", "turntable", "report"}


def test_weights_dir_writes_the_model_and_the_run_loads_it(tmp_path, monkeypatch):
    """--weights-dir: the built-in model is written as a user's downloaded directories (fp16 would be the GPU's;
    fp32 here), and the generate run loads it from there through the real loading path."""
    from pgc_fast.apps.demo import make_demo_mesh
    from pgc_fast.mesh import save_mesh

    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))  # the runs' workspaces land here
    save_mesh(make_demo_mesh(12, 6), tmp_path / "m.obj")
    weights = tmp_path / "weights"
    flags = "--res_fine 32 --output.turntable_frames 2 --output.turntable_resolution 32 --texture.export_resolution 64"
    argv = ["--recipe", "fast", "--model", "tiny-sd", "--device", "cpu", "--iters", "2", "--runs", "1"]
    argv += ["--mesh", str(tmp_path / "m.obj"), "--flags", flags, "--out", str(tmp_path / "out")]
    assert R.main([*argv, "--weights-dir", str(weights)]) == 0
    for part in ("base/unet", "base/text_encoder", "base/tokenizer", "base/scheduler", "vae", "controlnet-depth"):
        assert (weights / part).is_dir(), part
    assert list((weights / "base" / "unet").glob("*.safetensors"))
    assert "weights from local safetensors" in (tmp_path / "out" / "gpu_recipe_fast.md").read_text()
    (config,) = tmp_path.glob("pgc_recipe_*/run1/config.yaml")
    text = config.read_text()
    assert str(weights / "base") in text and f"depth={weights / 'controlnet-depth'}" in text


def test_save_builtin_weights_refuses_bad_input_in_one_line(tmp_path):
    import save_builtin_weights as S

    with pytest.raises(SystemExit, match=r"^save_builtin_weights\.py: build_builtin\(\): name must be one of"):
        S.main(["--model", "no-such-model", "--device", "cpu", "--dtype", "fp32", "--out", str(tmp_path / "w")])
    assert not (tmp_path / "w").exists() and [p.name for p in tmp_path.iterdir()] == []  # nothing half-written
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(SystemExit, match=r"^save_builtin_weights\.py: --out must be a new or empty directory"):
        S.main(["--model", "tiny-sd", "--device", "cpu", "--out", str(tmp_path / "full")])
