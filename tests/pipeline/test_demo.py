"""`pgc-fast demo` produces every output of a generation run (short version: 2 steps)."""

from __future__ import annotations

import json

from pgc_fast import cli
from pgc_fast.apps.demo import make_demo_mesh


def test_demo_mesh_is_closed_and_coloured():
    m = make_demo_mesh(12, 6)
    assert m.faces.shape == (2 * 12 * 5 + 2 * 12, 3) and m.colors.shape == m.vertices.shape
    # closed 2-manifold: every undirected edge used by exactly two faces, once in each direction
    e = {(int(a), int(b)) for f in m.faces for a, b in ((f[0], f[1]), (f[1], f[2]), (f[2], f[0]))}
    assert len(e) == 3 * len(m.faces) and all((b, a) in e for a, b in e)


def test_demo_writes_every_output(tmp_path, capsys):
    ws = tmp_path / "demo"
    assert cli.main(["demo", "--workspace", str(ws), "--iters", "2"]) == 0
    for name in (
        "mesh.obj",
        "mesh.mtl",
        "texture.png",
        "mesh.glb",
        "turntable.mp4",
        "turntable.gif",
        "config.yaml",
        "metrics.json",
        "report.html",
    ):
        assert (ws / name).is_file(), name
    assert list((ws / "validation").glob("*.png"))
    m = json.loads((ws / "metrics.json").read_text())
    assert m["steps"] == 2 and m["clip"]["enabled"] and m["it_per_s"] > 0
    assert {"load_model", "train", "compile", "steps", "final_views", "export_mesh", "turntable"} <= set(m["phases_s"])
    # the user-facing split (issue 21): each group a sum of timed phases; the loop's parts add up to its time
    ph, grouped = m["phases_s"], m["phases_grouped_s"]
    assert list(grouped) == ["load", "compile", "steps", "export", "turntable", "report"]
    assert all(v >= 0 for v in grouped.values()) and sum(grouped.values()) <= m["total_s"]
    loop = ph["compile"] + ph["steps"] + ph.get("validation", 0) + ph.get("checkpoint", 0)
    assert abs(loop - ph["train"]) < 0.05 * ph["train"] + 0.05
    assert m["startup_s"] is None or m["startup_s"] >= 0
    html = (ws / "report.html").read_text()
    assert "a blue striped object" in html and html.count("<svg") == 2 and "turntable.gif" in html
    assert "map_Kd texture.png" in (ws / "mesh.mtl").read_text()
    out = capsys.readouterr().out
    assert "report.html" in out and "toy-sd's classifier reads the textured vase as" in out
    assert "does not know" not in out


def test_demo_names_words_toy_sd_does_not_know(tmp_path, capsys):
    assert cli.main(["demo", "--workspace", str(tmp_path / "d"), "--iters", "1", "--text", "a teal ceramic vase"]) == 0
    assert "toy-sd does not know ['teal', 'ceramic', 'vase']" in capsys.readouterr().out
