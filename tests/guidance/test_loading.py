"""Model loading: one clear error for missing weights (offline), local diffusers directories, tokens, ControlNet
specs; a pickle in a model directory runs no code."""

from __future__ import annotations

import json

import pytest
import torch

from pgc_fast.config import GuidanceConfig
from pgc_fast.guidance import GuidanceLoadError, build_guidance, load_guidance, load_models
from pgc_fast.guidance.models.loading import CONTROLNETS, hf_token, parse_control


def test_missing_weights_offline_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = GuidanceConfig(
        model="nonexistent-org/no-such-model",
        controlnets=("depth",),
        control_scales=(1.0,),
        vae="another-org/no-vae",
        cache_dir=str(tmp_path),
        text="x",
    )
    with pytest.raises(GuidanceLoadError) as ei:
        load_guidance(cfg, device="cpu", dtype="auto", seed=0, iters=10)
    msg = str(ei.value)
    for needle in (
        "nonexistent-org/no-such-model",
        "another-org/no-vae",
        CONTROLNETS[("sd", "depth")],
        str(tmp_path),
        "HF_HUB_OFFLINE=1",
        "hf download nonexistent-org/no-such-model",
        "tiny-sdxl",
    ):
        assert needle in msg, needle


def test_cli_prints_load_error_without_traceback(tmp_path, monkeypatch, capsys):
    from pgc_fast.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    rc = main(
        [
            "image",
            "--text",
            "x",
            "--model",
            "nonexistent-org/no-such-model",
            "--device",
            "cpu",
            "--workspace",
            str(tmp_path / "ws"),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2
    assert "nonexistent-org/no-such-model" in err and "Traceback" not in err


def _save_tiny_sd(bundle, root):
    from diffusers import DDPMScheduler

    bundle.unet.save_pretrained(root / "unet")
    bundle.vae.save_pretrained(root / "vae")
    bundle.text_encoders[0].save_pretrained(root / "text_encoder")
    bundle.tokenizers[0].save_pretrained(root / "tokenizer")
    DDPMScheduler(**bundle.scheduler_config).save_pretrained(root / "scheduler")
    (root / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))


def test_local_directory_loads_and_steps(tiny_sd, tmp_path, make_inputs):
    root = tmp_path / "tiny-sd-local"
    _save_tiny_sd(tiny_sd, root)
    b = load_models(str(root), device="cpu", dtype=torch.float32)
    assert not b.is_sdxl and b.resolution == 64 and b.sources["model"] == str(root)
    torch.testing.assert_close(next(b.unet.parameters()), next(tiny_sd.unet.parameters()))
    g = build_guidance(GuidanceConfig(text="a panda"), b, seed=0, iters=10)
    img, _, _ = make_inputs()
    out = g.step(img, step=1)
    assert torch.isfinite(out.grad).all()
    # an incomplete directory is reported, not crashed on
    for f in (root / "unet").glob("*.safetensors"):
        f.unlink()
    with pytest.raises(GuidanceLoadError, match="unet/"):
        load_models(str(root), device="cpu", dtype=torch.float32)


@pytest.mark.parametrize(
    ("sub", "weights"), [("unet", "diffusion_pytorch_model.bin"), ("text_encoder", "pytorch_model.bin")]
)
def test_a_pickle_in_a_local_model_directory_runs_no_code(tiny_sd, tmp_path, sub, weights):
    """Models from local directories: .bin weights are pickles; diffusers and transformers load them with
    torch.load(weights_only=True) (no code runs), and the refusal is one GuidanceLoadError naming the file."""
    import pipeline_support as S

    root = tmp_path / "tiny-sd-local"
    _save_tiny_sd(tiny_sd, root)
    marker = tmp_path / "pwned"
    for f in (root / sub).glob("*.safetensors"):
        f.unlink()
    (root / sub / weights).write_bytes(S.malicious_pickle(marker))
    with pytest.raises(GuidanceLoadError, match=f"from {root / sub} refused: its .bin weights are a pickle"):
        load_models(str(root), device="cpu", dtype=torch.float32)
    assert not marker.exists()
    torch.load(root / sub / weights, weights_only=False)  # the payload is live: the old way runs it
    assert marker.exists()


def test_token_sources(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    tok = tmp_path / "TOKEN"
    assert hf_token(tok) is None
    tok.write_text("hf_file_token\n")
    assert hf_token(tok) == "hf_file_token"
    monkeypatch.setenv("HF_TOKEN", "hf_env_token")
    assert hf_token(tok) == "hf_env_token"


def test_control_specs():
    assert parse_control("depth", "sdxl") == ("depth", "diffusers/controlnet-depth-sdxl-1.0")
    assert parse_control("shuffle", "sd") == ("shuffle", "lllyasviel/control_v11e_sd15_shuffle")
    assert parse_control("tile=/models/my_tile", "sdxl") == ("tile", "/models/my_tile")
    with pytest.raises(GuidanceLoadError, match="no default 'tile' ControlNet"):
        parse_control("tile", "sdxl")
    with pytest.raises(GuidanceLoadError, match="kind must be one of"):
        parse_control("canny=foo/bar", "sd")


def test_builtin_names_and_bad_control():
    with pytest.raises(GuidanceLoadError, match="kind must be one of"):
        load_models("tiny-sd", controlnets=("canny",), device="cpu", dtype=torch.float32)


def test_hub_cache_offline_resolution(tiny_sd, tmp_path, monkeypatch, make_inputs):
    """A repo id found in the HF cache layout (models--org--name/snapshots/<rev>) loads with HF_HUB_OFFLINE=1."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cache = tmp_path / "hub"
    rev = "0123456789abcdef0123456789abcdef01234567"
    repo_dir = cache / "models--fake-org--tiny-sd"
    _save_tiny_sd(tiny_sd, repo_dir / "snapshots" / rev)
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(rev)
    b = load_models("fake-org/tiny-sd", device="cpu", dtype=torch.float32, cache_dir=str(cache))
    assert b.sources["model"].endswith(rev) and not b.is_sdxl
    img, _, _ = make_inputs()
    assert torch.isfinite(build_guidance(GuidanceConfig(text="x"), b, seed=0, iters=10).step(img, step=1).grad).all()
