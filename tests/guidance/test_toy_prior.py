"""toy-sd, the prior the project trains itself (issue 9): the shipped weights load like any model, its samples
follow their captions (the issue's quality bars, measured with the diffusers pipeline), and SDS with it moves a
texture to the colour the prompt names (end to end through ``pgc-fast generate``)."""

from __future__ import annotations

import contextlib
import json

import numpy as np
import pytest
import torch

from pgc_fast.apps import toy_prior as tp
from pgc_fast.guidance.models import toy

pytestmark = pytest.mark.skipif(
    not (toy.WEIGHTS_DIR / "meta.json").is_file(), reason="toy-sd weights not built (pgc-fast train-prior)"
)

COLOURS = list(toy.COLOURS)
SAMPLES_PER_CAPTION = 2


def test_weights_are_small_and_say_how_they_were_made():
    files = sorted(toy.WEIGHTS_DIR.glob("*.safetensors"))
    assert [f.stem for f in files] == ["text_encoder", "unet", "vae"]
    assert sum(f.stat().st_size for f in files) <= 12 * 2**20
    meta = toy.read_meta()
    # "python -m pgc_fast.guidance.train_prior": the same trainer before it moved to apps/ (pgc-fast train-prior)
    commands = ("pgc-fast train-prior", "python -m pgc_fast.guidance.train_prior")
    assert len(meta["commit"]) == 40 and meta["command"].startswith(commands)
    assert meta["seed"] == 0 and meta["vocab"] == list(toy.VOCAB)
    assert meta["losses"]["vae"] and meta["losses"]["unet"] and meta["data"]["resolution"] == 64
    # training lowered both losses
    assert meta["losses"]["vae"][-1][1] < meta["losses"]["vae"][0][1]
    assert meta["losses"]["unet"][-1][1] < meta["losses"]["unet"][0][1]


def test_tokenizer_is_word_level_with_clip_layout():
    tok = toy.make_tokenizer()
    ids = tok(
        ["a red striped object, front view", "a Blue dotted thing"],
        padding="max_length",
        max_length=toy.MAX_LENGTH,
        truncation=True,
    ).input_ids
    v = {w: i for i, w in enumerate(toy.VOCAB)}
    assert ids[0][:10] == [
        v["<|startoftext|>"],
        v["a"],
        v["red"],
        v["striped"],
        v["object"],
        v[","],
        v["front"],
        v["view"],
        v["<|endoftext|>"],
        v["<|pad|>"],
    ]
    assert ids[1][2] == v["blue"] and ids[1][4] == v["<|unk|>"]  # lower-cased; unknown words → unk
    assert all(len(r) == toy.MAX_LENGTH for r in ids)


def test_loads_like_any_model():
    from pgc_fast.guidance.models.loading import load_models

    b = load_models("toy-sd", device="cpu", dtype=torch.float32)
    assert b.name == "toy-sd" and not b.is_sdxl and b.resolution == 64
    assert b.vae.config.scaling_factor == pytest.approx(toy.read_meta()["scaling_factor"])
    with pytest.raises(ValueError, match="toy-sd has no ControlNets"):
        load_models("toy-sd", controlnets=["depth"])


def test_quality_references_classify_real_renders():
    """The simple colour / pattern tests below are only meaningful if they classify real training renders."""
    ref = toy.read_meta()["quality_refs"]
    assert ref["real_colour_acc"] >= 0.9 and ref["real_pattern_acc"] >= 0.75


@contextlib.contextmanager
def _one_torch_thread():
    """The CPU runs below use one torch thread, as `pgc-fast demo` does (apps/demo.py, _one_thread): as fast as two
    on an idle 2-core machine and not slowed several-fold when another process shares it."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


@pytest.fixture
def one_thread():
    with _one_torch_thread():
        yield


@pytest.fixture(scope="module")
def samples():
    """Every caption × SAMPLES_PER_CAPTION, sampled with the diffusers pipeline (DDIM, 30 steps, CFG 7.5, seed 0)
    on the CPU — train_prior.sample_quality, the measurement the trainer records in meta.json."""
    with _one_torch_thread():
        return tp.sample_quality(toy.WEIGHTS_DIR, "cpu", SAMPLES_PER_CAPTION, seed=0)


@pytest.mark.slow
def test_samples_have_the_captioned_colour(samples):
    print(f"toy-sd colour accuracy {samples['colour']:.3f} over {samples['n']} samples")
    assert samples["colour"] >= 0.90


@pytest.mark.slow
def test_samples_have_the_captioned_pattern(samples):
    print(f"toy-sd pattern accuracy {samples['pattern']:.3f} over {samples['n']} samples")
    assert samples["pattern"] >= 0.75


def _nearest_colour(rgb: np.ndarray) -> str:
    pal = np.array(list(toy.COLOURS.values()))
    return COLOURS[int(np.argmin(np.linalg.norm(pal - rgb[None], axis=1)))]


E2E_COLOURS = ["red", "green", "blue"]


def _demo_vase(tmp_path):
    from pgc_fast.apps.demo import make_demo_mesh
    from pgc_fast.mesh import save_mesh

    mesh = tmp_path / "vase.ply"
    save_mesh(make_demo_mesh(), mesh)
    return mesh


def _generate(tmp_path, text: str, *extra: str):
    """`pgc-fast generate --preset demo --model toy-sd` on the demo vase: the demo's settings (600 steps of SDS with
    PGC at its default τ = 0.1, 2 views of 64² per step, CFG 30, t ∈ [0.02, 0.98], a 64² UV texture; about a minute
    on 2 cores), without the turntable. Returns the workspace."""
    from pgc_fast import cli

    ws = tmp_path / "ws"
    argv = [
        "generate",
        "--preset",
        "demo",
        "--model",
        "toy-sd",
        "--text",
        text,
        "--mesh_path",
        str(_demo_vase(tmp_path)),
        "--workspace",
        str(ws),
        "--output.root",
        "",
        "--force",
        "--seed",
        "0",
        "--output.turntable_frames",
        "0",
        "--output.val_every",
        "0",
        "--texture.export_resolution",
        "256",
        *extra,
    ]
    assert cli.main(argv) == 0
    m = json.loads((ws / "metrics.json").read_text())
    assert m["clip"]["enabled"] and m["steps"] == 600
    return ws


def test_the_demo_vase_starts_as_none_of_the_test_words():
    """What the classifier reads on the demo vase's own vertex colours (the texture the runs below start from):
    none of the colours the tests ask for, but striped (its six painted stripes) - so the striped test starts from
    a blank texture."""
    from pgc_fast.apps.demo import make_demo_mesh
    from pgc_fast.mesh import Normalization
    from pgc_fast.render import RenderMesh, VertexColorTexture

    m = make_demo_mesh()
    v = Normalization.fit(m.vertices, 0.8).apply(m.vertices)
    mesh = RenderMesh(vertices=torch.from_numpy(v).float(), faces=torch.from_numpy(m.faces))
    r = tp.classify_views(mesh, VertexColorTexture(torch.from_numpy(m.colors)))
    assert not set(r["colour"]) & set(E2E_COLOURS), r["colour"]
    assert r["majority"][1] == "striped", r["pattern"]


@pytest.mark.slow
@pytest.mark.parametrize("colour", E2E_COLOURS)
def test_generate_moves_texture_to_the_named_colour(tmp_path, colour, one_thread):
    """`pgc-fast generate --model toy-sd` on the demo vase (which starts terracotta/teal with painted stripes) with
    "a <colour> plain object": the exported textured mesh, seen from six sides, reads as the named colour (nearest
    colour reference of toy-sd's quality test) in at least five of them. (Not the pattern: the frequency test reads
    the faint texture a plain prompt leaves as striped in some seeds, benches/RESULTS.md.)"""
    ws = _generate(tmp_path, toy.caption(colour, "plain"))
    r = tp.classify_textured_mesh(ws / "mesh.glb")
    assert r["colour"].count(colour) >= 5, f"{colour!r}: views read as {r['colour']}"


@pytest.mark.slow
def test_generate_paints_the_named_pattern(tmp_path, one_thread):
    """ "a red striped object" from a blank texture (no vertex-colour start, so every stripe comes from the prior):
    the frequency test (toy_prior.pattern_features: high-pass energy, spectral anisotropy, skewness; nearest
    pattern centroid) reads stripes in at least four of six side views, and the colour is red."""
    ws = _generate(tmp_path, toy.caption("red", "striped"), "--no-texture.init_from_vertex_colors")
    r = tp.classify_textured_mesh(ws / "mesh.glb")
    assert r["pattern"].count("striped") >= 4, f"views read as {r['pattern']}"
    assert r["majority"][0] == "red", f"views read as {r['colour']}"


RED_2D = pytest.param(
    "red",
    marks=pytest.mark.xfail(
        reason="2-D pixel SDS for 'a red plain object' ends with a green-yellow blob under a 4-pixel grid, which "
        "toy-sd's encoder reads as a clean red object (decoding its latent gives red): an adversarial direction "
        "of the small encoder that a free 64² image can follow and a texture seen from moving views cannot "
        "(the 3-D red run above passes); encoder alignment and hardening did not remove it (benches/RESULTS.md)",
        strict=True,
    ),
)


@pytest.mark.slow
@pytest.mark.parametrize("colour", [RED_2D, "green", "blue", "yellow"])
def test_image_2d_mode_follows_the_prompt(tmp_path, colour, one_thread):
    """2D mode (`pgc-fast image`, SDS + PGC on a 64² image): the object region ends nearest the named colour."""
    from PIL import Image

    from pgc_fast import cli

    ws = tmp_path / "img"
    argv = [
        "image",
        "--text",
        toy.caption(colour, "plain"),
        "--model",
        "toy-sd",
        "--size",
        "64",
        "--iters",
        "150",
        "--device",
        "cpu",
        "--workspace",
        str(ws),
        "--guidance-scale",
        "7.5",
        "--save-every",
        "0",
        "--lr",
        "0.03",
    ]
    assert cli.main(argv) == 0
    img = torch.from_numpy(np.asarray(Image.open(ws / "image.png").convert("RGB"), dtype=np.float32) / 255)
    mean = tp.mean_colour(img.permute(2, 0, 1)[None])[0].numpy()
    assert _nearest_colour(mean) == colour, f"centre colour {mean.round(3)}"


@pytest.mark.slow
def test_align_from_changes_only_the_encoder(tmp_path, one_thread):
    """`pgc-fast train-prior --align-from DIR` (the experimental encoder alignment, off in the shipped weights):
    the encoder moves, decoder / UNet / text encoder stay bit-identical, and meta.json records the phase."""
    from safetensors.torch import load_file

    from pgc_fast.apps.toy_prior import main

    out = tmp_path / "aligned"
    argv = [
        "--align-from",
        str(toy.WEIGHTS_DIR),
        "--out",
        str(out),
        "--align-steps",
        "2",
        "--geometry",
        "16",
        "--recon-samples",
        "64",
    ]
    assert main([*argv, "--threads", "1"]) == 0
    for name in ("unet", "text_encoder"):
        assert (out / f"{name}.safetensors").read_bytes() == (toy.WEIGHTS_DIR / f"{name}.safetensors").read_bytes()
    old, new = load_file(str(toy.WEIGHTS_DIR / "vae.safetensors")), load_file(str(out / "vae.safetensors"))
    assert old.keys() == new.keys()
    moved = {k for k in old if not torch.equal(old[k], new[k])}
    assert moved and all(k.startswith(("encoder.", "quant_conv.")) for k in moved)
    meta = toy.read_meta(out)
    assert len(meta["losses"]["align"]) == 1 and meta["align"]["command"].startswith(
        "pgc-fast train-prior --align-from"
    )
    assert set(meta["quality"]["vae_recon_align"]) == {"before", "after", "geometry_buffers"}
