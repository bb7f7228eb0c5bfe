"""The original's shape commands run as written (issue 17, item 5): README commands D, E, F, G and -O1 with
``pgc-fast generate`` instead of ``python main.py``, two steps each on the CPU with the tiny built-in models, writing
every output; DMTet with --vsd, --bgt, --csd, --ssd, --dreamtime and --cfg_rescale where the original can run them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from pgc_fast import cli
from pgc_fast import config as C
from pgc_fast.mesh import Normalization, load_mesh
from pgc_fast.train.dmtet import grid_cell

pytestmark = pytest.mark.usefixtures("one_thread")

SHAPE_COMMANDS = {
    "D": ["-O0", "-O4", "--only_normal"],
    "E": ["-O0", "-O4", "--only_normal", "--guidance", "controlnet"],
    "F": ["-O0", "-O4", "--no_normal", "--guidance", "controlnet"],
    "G": ["-O0", "-O4", "--guidance", "controlnet"],
    "O1": ["-O1"],
}
PROMPT = ["--text", "a ceramic vase"]
# CPU-sized: 32² renders, a 32 grid, a small hash grid, the direct initialisation (exact at the grid; the original's
# fit is test_fit_initialisation_through_the_cli), 2 steps, small exports. Everything else as the command says.
TINY = [
    "--device",
    "cpu",
    "--iters",
    "2",
    "--bs",
    "1",
    "--res_fine",
    "32",
    "--tet_res",
    "32",
    "--mesh.sdf_init",
    "direct",
    "--texture.field_levels",
    "8",
    "--texture.field_log2_table_size",
    "12",
    "--texture.init_iters",
    "20",
    "--texture.export_resolution",
    "64",
    "--output.turntable_frames",
    "3",
    "--output.turntable_resolution",
    "32",
    "--render.backend",
    "cpu",
]


def _generate(tmp_path, name, flags, extra=()):
    model = "tiny-sd" if "-O4" not in flags else "tiny-sdxl"
    ws = tmp_path / "exp" / name
    argv = [
        "generate",
        *flags,
        *PROMPT,
        "--mesh_path",
        str(tmp_path / "vase.ply"),
        "--workspace",
        name,
        "--output.root",
        str(tmp_path / "exp"),
        "--model",
        model,
        *TINY,
        *extra,
    ]
    return cli.main(argv), ws


@pytest.mark.parametrize("name", list(SHAPE_COMMANDS))
def test_shape_command_runs_and_writes_every_output(tmp_path, vase, name):
    code, ws = _generate(tmp_path, name, SHAPE_COMMANDS[name])
    assert code == 0
    for f in ("mesh.obj", "mesh.mtl", "texture.png", "mesh.glb", "config.yaml", "metrics.json", "report.html"):
        assert (ws / f).is_file(), f
    for stem in ("turntable", "turntable_normal", "turntable_depth"):
        assert (ws / f"{stem}.gif").is_file(), stem
    assert (ws / "validation" / "step0000002_rgb.png").is_file()
    assert (ws / "validation" / "step0000002_normal.png").is_file()
    m = json.loads((ws / "metrics.json").read_text())
    geo = m["geometry"]
    assert geo["shape"] == "dmtet" and geo["tet_res"] == 32 and geo["mesh_faces"] > 100 and geo["extract_ms_mean"] > 0
    assert len(m["history"]["mesh_faces"]) == 2 and len(m["history"]["extract_ms"]) == 2
    # The refined mesh is written in the input's frame and units (the input vase spans y in [-1, 1]).
    out, src = load_mesh(ws / "mesh.glb"), load_mesh(vase)
    cell = grid_cell(32) / Normalization.fit(src.vertices).scale  # one grid cell in input units
    np.testing.assert_allclose(out.vertices.min(0), src.vertices.min(0), atol=cell)
    np.testing.assert_allclose(out.vertices.max(0), src.vertices.max(0), atol=cell)
    cfg = C.from_dict(yaml.safe_load((ws / "config.yaml").read_text())["config"])
    assert cfg.mesh.shape == "dmtet" and cfg.guidance.rgb_sds == (name not in "DE")
    assert cfg.guidance.normal_sds == (name != "F")


def test_fit_initialisation_through_the_cli(tmp_path, vase):
    """-O1 with the original's initialisation: the field fits the mesh's signed distance and the texture its vertex
    colours on the same points (one phase, no separate texture pre-fit)."""
    code, ws = _generate(
        tmp_path, "fit", SHAPE_COMMANDS["O1"], ["--mesh.sdf_init", "fit", "--mesh.sdf_init_iters", "400"]
    )
    assert code == 0
    m = json.loads((ws / "metrics.json").read_text())
    assert "init_geometry" in m["phases_s"] and "init_texture" not in m["phases_s"]
    assert m["geometry"]["mesh_faces"] > 100 and (ws / "mesh.glb").is_file()


@pytest.mark.parametrize(
    "flags",
    [
        ["-O0", "-O4", "--no_normal", "--vsd", "--guidance_scale", "7.5"],
        ["-O0", "-O4", "--guidance", "controlnet", "--bgt"],
        ["-O0", "-O4", "--guidance", "controlnet", "--csd"],
        ["-O0", "-O4", "--ssd"],
        ["-O0", "-O4", "--guidance", "controlnet", "--dreamtime"],
        ["-O0", "-O4", "--guidance", "controlnet", "--cfg_rescale"],
    ],
    ids=["vsd", "bgt", "csd", "ssd", "dreamtime", "cfg_rescale"],
)
def test_shape_with_other_losses(tmp_path, vase, flags):
    extra = ["--iters", "1", "--mesh.sdf_init", "direct", "--output.turntable_frames", "0", "--no-output.save_mesh"]
    code, ws = _generate(tmp_path, "loss", flags, extra)
    assert code == 0 and (ws / "metrics.json").is_file()
    assert json.loads((ws / "metrics.json").read_text())["geometry"]["mesh_faces"] > 100


def test_o3_refines_the_shape_with_zero123(tmp_path, vase, capsys):
    """-O3 (Zero123 BGT+ from a reference image + the text at 0.01) optimises DMTet. It does not canonicalise (the
    original's preset): a mesh outside the grid is refused in one line naming --canonicalize."""
    from PIL import Image

    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[6:26, 10:22] = (200, 60, 40, 255)
    Image.fromarray(rgba).save(tmp_path / "ref.png")
    o3 = ["-O3", "--ref_path", str(tmp_path / "ref.png")]
    extra = ["--iters", "1", "--guidance.zero123_model", "tiny-zero123", "--output.turntable_frames", "0"]
    code, ws = _generate(tmp_path, "o3_raw", o3, extra)  # the vase reaches y = ±1: outside [-1, 1]^3's interior
    err = capsys.readouterr().err
    assert code == 2 and "--canonicalize" in err and len(err.strip().splitlines()) == 1 and not ws.exists()
    code, ws = _generate(tmp_path, "o3", [*o3, "--canonicalize"], extra)
    assert code == 0, capsys.readouterr().err
    m = json.loads((ws / "metrics.json").read_text())
    assert m["geometry"]["mesh_faces"] > 100 and (ws / "mesh.glb").is_file()


def test_vsd_with_normal_sds_is_refused(tmp_path, vase, capsys):
    """The original's VSD guidance has no normal-map step (it crashes there): refused, with the way out."""
    code, ws = _generate(tmp_path, "vsd", ["-O0", "-O4", "--vsd", "--guidance_scale", "7.5"])
    err = capsys.readouterr().err
    assert code == 2 and "the original cannot run it" in err and "--no_normal" in err and not ws.exists()


def test_shape_command_learning_rates_and_schedule():
    """D/E/G keep the original's geometry rates (grid 1e-4, MLP 1e-5), F divides them by 20; -O1 keeps its
    zoom stages, smoothing window and vertex-colour initialisation."""

    def resolve(flags: list[str]) -> C.RunConfig:
        args = cli.build_parser().parse_args(["generate", *flags, *PROMPT, "--mesh_path", "panda.obj"])
        return cli.generate.resolve_generate(args)[0]

    d, f, g, o1 = (resolve(SHAPE_COMMANDS[k]) for k in ("D", "F", "G", "O1"))
    assert d.optim.lr_geometry == g.optim.lr_geometry == pytest.approx(1e-5)
    assert f.optim.lr_geometry == pytest.approx(5e-7) and d.optim.grid_lr_scale == 10.0
    assert (d.mesh.smooth_iters, g.mesh.smooth_iters) == (0, 0)  # the SDXL rule turned smoothing off
    assert (d.optim.batch_size, g.optim.batch_size, g.optim.iters) == (2, 1, 2400)
    assert (o1.mesh.smooth_iters, o1.mesh.lambda_smooth, o1.optim.iters, o1.optim.batch_size) == (1000, 2e6, 2000, 4)
    assert o1.render.zoom_stages and o1.texture.init_from_vertex_colors and o1.guidance.family == "sd"
    assert o1.guidance.rgb_sds and o1.guidance.normal_sds and o1.render.shading == "random"
    assert (o1.render.resolution, o1.mesh.tet_res, o1.mesh.canonicalize) == (512, 256, True)
    for cfg in (d, f, g, o1):
        C.validate(cfg, check_files=False)


def test_test_mode_renders_a_dmtet_workspace(tmp_path, vase):
    """--test on a DMTet run's workspace: the checkpoint's geometry is restored and its final surface rendered."""
    code, ws = _generate(tmp_path, "o1", SHAPE_COMMANDS["O1"])
    assert code == 0
    argv = ["generate", "--workspace", str(ws), "--output.root", "", "--test", "--output.turntable_frames", "3"]
    assert cli.main([*argv, "--device", "cpu"]) == 0
    for f in ("step0000002_rgb.mp4", "step0000002_normal.mp4", "step0000002_depth.mp4", "poses.npy"):
        assert (ws / "results" / f).is_file(), f
    assert load_mesh(ws / "mesh.glb").faces.shape[0] > 100
