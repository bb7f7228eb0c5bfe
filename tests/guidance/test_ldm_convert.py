"""The ldm → diffusers conversion of the original's Zero123 checkpoint (guidance/models/ldm_convert.py): the UNet
and VAE key maps agree with diffusers' own single-file converter (an independent implementation), the OpenAI CLIP
image tower converts to a transformers model that computes the same embedding as a direct implementation of
OpenAI's, the EMA copy wins as in the original, and a synthetic checkpoint (safetensors or a weights-only pickle,
with its YAML) loads into a model with the same outputs; a pickle that would run code is refused."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pgc_fast.guidance.models import ldm_convert as L
from pgc_fast.guidance.models.zero123 import ZERO123_UNET_CONFIG, build_zero123_builtin, load_zero123

TINY_YAML = """\
model:
  target: ldm.models.diffusion.ddpm.LatentDiffusion
  params:
    linear_start: 0.00085
    linear_end: 0.0120
    timesteps: 1000
    image_size: 8
    scale_factor: 0.18215
    conditioning_key: hybrid
    unet_config:
      target: ldm.modules.diffusionmodules.openaimodel.UNetModel
      params: {in_channels: 8, out_channels: 4, model_channels: 32, attention_resolutions: [2], num_res_blocks: 1,
               channel_mult: [1, 2], num_heads: 4, use_spatial_transformer: true, transformer_depth: 1,
               context_dim: 32, legacy: false}
    first_stage_config:
      target: ldm.models.autoencoder.AutoencoderKL
      params:
        embed_dim: 4
        ddconfig: {double_z: true, z_channels: 4, resolution: 64, in_channels: 3, out_ch: 3, ch: 32,
                   ch_mult: [1, 1, 1, 1], num_res_blocks: 1, attn_resolutions: [], dropout: 0.0}
    cond_stage_config:
      target: ldm.modules.encoders.modules.FrozenCLIPImageEmbedder
"""


@pytest.fixture(scope="module")
def tiny():
    return build_zero123_builtin("tiny-zero123", seed=3)


def _to_ldm(sd: dict[str, torch.Tensor], key_map, shapes_4d: bool = False) -> dict[str, torch.Tensor]:
    """diffusers tensors → ldm names (the inverse of the map under test); VAE attention weights as 1x1 convs."""
    out = {}
    for k, v in sd.items():
        name = L.ldm_key(k, key_map)
        assert name is not None, k
        if shapes_4d and ".mid.attn_1." in name and name.endswith("weight") and v.dim() == 2:
            v = v[:, :, None, None]
        out[name] = v
    return out


def _openai_visual(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers CLIP vision tensors → OpenAI CLIP ``visual.*`` names (q/k/v fused, projection transposed)."""
    v = "vision_model."
    out = {
        "class_embedding": sd[f"{v}embeddings.class_embedding"],
        "conv1.weight": sd[f"{v}embeddings.patch_embedding.weight"],
        "positional_embedding": sd[f"{v}embeddings.position_embedding.weight"],
        "proj": sd["visual_projection.weight"].t().contiguous(),
    }
    for ours, theirs in (("pre_layrnorm", "ln_pre"), ("post_layernorm", "ln_post")):
        for p in ("weight", "bias"):
            out[f"{theirs}.{p}"] = sd[f"{v}{ours}.{p}"]
    n = len({k.split(".")[3] for k in sd if k.startswith(f"{v}encoder.layers.")})
    for i in range(n):
        a, b = f"{v}encoder.layers.{i}.", f"transformer.resblocks.{i}."
        for p in ("weight", "bias"):
            out[f"{b}attn.in_proj_{p}"] = torch.cat([sd[f"{a}self_attn.{x}_proj.{p}"] for x in "qkv"])
            for ours, theirs in (
                ("self_attn.out_proj", "attn.out_proj"),
                ("layer_norm1", "ln_1"),
                ("layer_norm2", "ln_2"),
                ("mlp.fc1", "mlp.c_fc"),
                ("mlp.fc2", "mlp.c_proj"),
            ):
                out[f"{b}{theirs}.{p}"] = sd[f"{a}{ours}.{p}"]
    return out


def _openai_encode_image(sd: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """OpenAI CLIP's VisionTransformer.forward written out (the reference twin of the converted model)."""
    width = sd["conv1.weight"].shape[0]
    h = F.conv2d(x, sd["conv1.weight"], stride=sd["conv1.weight"].shape[-1]).flatten(2).transpose(1, 2)
    h = torch.cat([sd["class_embedding"].expand(h.shape[0], 1, width), h], dim=1) + sd["positional_embedding"]
    h = F.layer_norm(h, (width,), sd["ln_pre.weight"], sd["ln_pre.bias"])
    n = len({k.split(".")[2] for k in sd if k.startswith("transformer.resblocks.")})
    for i in range(n):
        p = f"transformer.resblocks.{i}."
        y = F.layer_norm(h, (width,), sd[p + "ln_1.weight"], sd[p + "ln_1.bias"]).transpose(0, 1)
        y, _ = F.multi_head_attention_forward(
            y,
            y,
            y,
            width,
            width // 64,
            sd[p + "attn.in_proj_weight"],
            sd[p + "attn.in_proj_bias"],
            None,
            None,
            False,
            0.0,
            sd[p + "attn.out_proj.weight"],
            sd[p + "attn.out_proj.bias"],
            need_weights=False,
        )
        h = h + y.transpose(0, 1)
        y = F.layer_norm(h, (width,), sd[p + "ln_2.weight"], sd[p + "ln_2.bias"])
        y = F.linear(y, sd[p + "mlp.c_fc.weight"], sd[p + "mlp.c_fc.bias"])
        y = y * torch.sigmoid(1.702 * y)  # QuickGELU
        h = h + F.linear(y, sd[p + "mlp.c_proj.weight"], sd[p + "mlp.c_proj.bias"])
    return F.layer_norm(h[:, 0], (width,), sd["ln_post.weight"], sd["ln_post.bias"]) @ sd["proj"]


def _synthetic_checkpoint(b, ema_offset: float = 0.0) -> dict[str, torch.Tensor]:
    """The tiny model's weights in the original's ldm layout (+ an EMA copy of the UNet shifted by ema_offset)."""
    ck = {}
    unet = _to_ldm(b.unet.state_dict(), L.unet_key_map(dict(b.unet.config)))
    ck.update({L.LDM_UNET + k: v.clone() for k, v in unet.items()})
    vae = _to_ldm(b.vae.state_dict(), L.vae_key_map(dict(b.vae.config)), shapes_4d=True)
    ck.update({L.LDM_VAE + k: v.clone() for k, v in vae.items()})
    ck.update({L.LDM_CLIP + k: v.clone() for k, v in _openai_visual(b.image_encoder.state_dict()).items()})
    ck.update({L.LDM_PROJECTION + k: v.clone() for k, v in b.projection.state_dict().items()})
    ck["cond_stage_model.model.token_embedding.weight"] = torch.zeros(3, 4)  # the text tower stays behind
    if ema_offset:
        for k in unet:
            ck["model_ema." + "".join(("diffusion_model." + k).split("."))] = unet[k] + ema_offset
    return ck


def test_unet_map_agrees_with_diffusers_converter(tiny):
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    sd = tiny.unet.state_dict()
    ldm = {L.LDM_UNET + k: v for k, v in _to_ldm(sd, L.unet_key_map(dict(tiny.unet.config))).items()}
    theirs = convert_ldm_unet_checkpoint(ldm, dict(tiny.unet.config))
    assert set(theirs) == set(sd)
    assert all(torch.equal(theirs[k], sd[k]) for k in sd)


def test_full_size_unet_map_agrees_with_diffusers_converter():
    """The zero123-xl architecture (SD 1.x, 8 input channels) on the meta device: every tensor lands where
    diffusers' converter puts it, and the well-known SD 1.x names come out."""
    from diffusers import UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    with torch.device("meta"):
        unet = UNet2DConditionModel(**ZERO123_UNET_CONFIG)
    assert dict(L.unet_config(L.ZERO123_LDM_PARAMS)).items() <= dict(unet.config).items()
    key_map = L.unet_key_map(dict(unet.config))
    sd = unet.state_dict()
    ldm = {L.LDM_UNET + L.ldm_key(k, key_map): v for k, v in sd.items()}  # type: ignore[operator]
    assert len(ldm) == len(sd) == 686
    theirs = convert_ldm_unet_checkpoint(ldm, dict(unet.config))
    assert set(theirs) == set(sd) and all(theirs[k] is sd[k] for k in sd)
    assert L.ldm_key("down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight", key_map) == (
        "input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight"
    )
    assert L.ldm_key("up_blocks.0.upsamplers.0.conv.weight", key_map) == "output_blocks.2.1.conv.weight"
    assert L.ldm_key("up_blocks.1.upsamplers.0.conv.bias", key_map) == "output_blocks.5.2.conv.bias"
    assert (
        L.ldm_key("down_blocks.2.resnets.0.conv_shortcut.weight", key_map) == "input_blocks.7.0.skip_connection.weight"
    )
    assert sd["conv_in.weight"].shape == (320, 8, 3, 3)


def test_vae_map_agrees_with_diffusers_converter(tiny):
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    sd = tiny.vae.state_dict()
    ldm = {L.LDM_VAE + k: v for k, v in _to_ldm(sd, L.vae_key_map(dict(tiny.vae.config)), shapes_4d=True).items()}
    assert ldm[L.LDM_VAE + "encoder.mid.attn_1.q.weight"].dim() == 4  # stored as a 1x1 conv, as ldm does
    theirs = convert_ldm_vae_checkpoint(ldm, dict(tiny.vae.config))
    assert set(theirs) == set(sd)
    assert all(torch.equal(theirs[k].reshape(sd[k].shape), sd[k]) for k in sd)


def test_clip_conversion_computes_openai_clip(tiny):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    visual = _openai_visual(tiny.image_encoder.state_dict())
    cfg = L.clip_vision_config(visual)
    assert (cfg["hidden_size"], cfg["num_hidden_layers"], cfg["image_size"], cfg["projection_dim"]) == (64, 2, 32, 32)
    model = CLIPVisionModelWithProjection(CLIPVisionConfig(**cfg)).eval()
    model.load_state_dict(L.clip_vision_state_dict(visual), strict=False)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = model(pixel_values=x).image_embeds
    torch.testing.assert_close(ours, _openai_encode_image(visual, x), atol=1e-5, rtol=1e-5)


def test_remap_names_what_does_not_fit(tiny):
    cfg = dict(tiny.unet.config)
    ldm = _to_ldm(tiny.unet.state_dict(), L.unet_key_map(cfg))
    shapes = {k: v.shape for k, v in tiny.unet.state_dict().items()}
    ldm.pop("out.2.weight")
    ldm["input_blocks.0.0.bias"] = torch.zeros(7)
    ldm["label_emb.0.weight"] = torch.zeros(1)
    with pytest.raises(L.ConversionError) as e:
        L.remap(ldm, shapes, L.unet_key_map(cfg), "UNet")
    msg = str(e.value)
    assert "missing 1: conv_out.weight" in msg and "wrong shape 1: input_blocks.0.0.bias" in msg
    assert "unused 1: label_emb.0.weight" in msg


def test_tiny_config_round_trips_through_the_yaml(tmp_path, tiny):
    (tmp_path / "tiny.yaml").write_text(TINY_YAML)
    params = L.read_ldm_params(tmp_path / "tiny.yaml")
    for ours, theirs in ((L.unet_config(params), tiny.unet.config), (L.vae_config(params), tiny.vae.config)):
        for k, v in ours.items():
            assert (list(v) if isinstance(v, tuple) else v) == (
                list(theirs[k]) if isinstance(theirs[k], tuple) else theirs[k]
            ), k
    with pytest.raises(L.ConversionError, match="must be an ldm YAML"):
        (tmp_path / "bad.yaml").write_text("model: {params: {}}\n")
        L.read_ldm_params(tmp_path / "bad.yaml")


def _outputs(b, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 8, 8, 8, generator=g)
    t = torch.tensor([10, 700])
    hidden = torch.randn(2, 1, 32, generator=g)
    img = torch.rand(1, 3, 64, 64, generator=g)
    with torch.no_grad():
        eps = b.unet(x, t, encoder_hidden_states=hidden).sample
        lat = b.vae.encode(2 * img - 1).latent_dist.mode()
        emb = b.image_encoder(pixel_values=torch.randn(1, 3, 32, 32, generator=g)).image_embeds
        proj = b.projection(torch.randn(2, 36, generator=g))
    return eps, lat, emb, proj


@pytest.mark.parametrize("fmt", ["safetensors", "ckpt"])
def test_synthetic_checkpoint_loads_with_ema(tmp_path, tiny, fmt):
    from safetensors.torch import save_file

    ck = _synthetic_checkpoint(tiny, ema_offset=0.01)
    path = tmp_path / f"zero123-tiny.{fmt}"
    if fmt == "safetensors":
        save_file(ck, str(path))
    else:
        torch.save({"state_dict": ck, "global_step": 105000, "epoch": 3}, path)  # a Lightning checkpoint's shape
    (tmp_path / "tiny.yaml").write_text(TINY_YAML)
    b = load_zero123(str(path), config=str(tmp_path / "tiny.yaml"))
    assert b.resolution == 64 and b.clip_size == 32 and b.scheduler_config["beta_end"] == 0.012
    ours, theirs = _outputs(b), _outputs(tiny)
    for a, c in zip(ours[1:], theirs[1:], strict=True):  # VAE, CLIP and projection unchanged
        torch.testing.assert_close(a, c, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(ours[0], theirs[0], atol=1e-4)  # the UNet took the EMA copy (shifted by 0.01)
    with torch.no_grad():
        for p in tiny.unet.parameters():
            p.add_(0.01)
        try:
            torch.testing.assert_close(ours[0], _outputs(tiny)[0], atol=1e-4, rtol=1e-4)
        finally:
            for p in tiny.unet.parameters():
                p.sub_(0.01)


def test_pickle_that_runs_code_is_refused(tmp_path, tiny):
    import pipeline_support as S
    from pgc_fast.guidance import GuidanceLoadError

    ck = _synthetic_checkpoint(tiny)
    marker = tmp_path / "ran"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": ck, "hook": S._Payload(f"open({str(marker)!r}, 'w').write('x')")}, path)
    with pytest.raises(GuidanceLoadError, match="weights_only") as e:
        load_zero123(str(path))
    assert "convert-zero123" in str(e.value)
    assert not marker.exists()
    with pytest.raises(GuidanceLoadError, match="not found"):
        load_zero123(str(tmp_path / "absent.ckpt"))


def test_scheduler_betas_are_the_originals():
    s = L.scheduler_config(L.ZERO123_LDM_PARAMS)
    assert (s["beta_start"], s["beta_end"], s["beta_schedule"], s["num_train_timesteps"]) == (
        0.00085,
        0.012,
        "scaled_linear",
        1000,
    )
    assert math.isclose(L.vae_config(L.ZERO123_LDM_PARAMS)["scaling_factor"], 0.18215)


def test_convert_command_writes_a_loadable_diffusers_directory(tmp_path, tiny, capsys):
    from safetensors.torch import save_file

    from pgc_fast import cli

    save_file(_synthetic_checkpoint(tiny), str(tmp_path / "z.safetensors"))
    (tmp_path / "tiny.yaml").write_text(TINY_YAML)
    out = tmp_path / "z-diffusers"
    argv = ["convert-zero123", str(tmp_path / "z.safetensors"), "--config", str(tmp_path / "tiny.yaml")]
    assert cli.main([*argv, "--out", str(out)]) == 0
    assert "--guidance.zero123_model" in capsys.readouterr().out
    assert {p.name for p in out.iterdir()} >= {"unet", "vae", "image_encoder", "clip_camera_projection", "scheduler"}
    assert not list(out.rglob("*.bin")) and not list(out.rglob("*.ckpt"))  # safetensors only
    for a, b in zip(_outputs(load_zero123(str(out))), _outputs(tiny), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert cli.main(["convert-zero123", str(tmp_path / "absent.ckpt"), "--out", str(out)]) == 2
    assert "not found" in capsys.readouterr().err
