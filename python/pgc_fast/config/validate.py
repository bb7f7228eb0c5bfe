"""``validate(cfg)``: every check of a RunConfig, collected into one ConfigError. Imports config.schema only."""

from __future__ import annotations

import dataclasses
import os
import typing
from typing import Any, Literal

from pgc_fast.config.schema import (
    CONTROL_TYPES,
    IMAGE_FORMATS,
    SECTIONS,
    UNSUPPORTED_MESSAGE,
    ConfigError,
    RunConfig,
)


def _check_literal(problems: list[str], where: str, value: Any, hint: Any) -> None:
    args = typing.get_args(hint)
    if typing.get_origin(hint) is Literal and value not in args:
        problems.append(f"{where} must be one of {', '.join(map(repr, args))}, got {value!r}")


def unsupported_features(cfg: RunConfig) -> list[str]:
    """Features of the original that belong to later work, each as a clear 'not supported yet' sentence."""
    out = []
    if cfg.mesh.shape == "dmtet":
        out.append(
            "mesh.shape=dmtet (DMTet shape optimisation: -O1, or -O4 without -O2) is "
            f"{UNSUPPORTED_MESSAGE}; add -O2 (fixed mesh, text-to-texture)"
        )
    if cfg.texture.material == "pbr":
        out.append(f"texture.material=pbr (--pbr, nvdiffrec PBR material) is {UNSUPPORTED_MESSAGE}")
    if cfg.guidance.zero123:
        out.append(f"guidance.zero123 (-O3 / --zero123, Zero123 image guidance) is {UNSUPPORTED_MESSAGE}")
    if cfg.guidance.latent:
        out.append(f"guidance.latent (--latent, Latent-NeRF texture) is {UNSUPPORTED_MESSAGE}")
    if cfg.guidance.lambda_saturation:
        out.append(f"guidance.lambda_saturation (saturation penalty) is {UNSUPPORTED_MESSAGE}")
    if cfg.guidance.normal_sds and cfg.mesh.shape == "fixed":
        out.append(
            f"guidance.normal_sds (normal-map SDS) only makes sense with shape optimisation, which is "
            f"{UNSUPPORTED_MESSAGE}"
        )
    return out


def validate(cfg: RunConfig, *, check_files: bool = True) -> RunConfig:
    """Check ``cfg``; collect every problem and raise one :class:`ConfigError`. Returns ``cfg`` unchanged.

    Args:
        cfg: the configuration.
        check_files: also check that input files (mesh, reference image, scenery) exist.
    """
    p: list[str] = list(unsupported_features(cfg))
    for sec in SECTIONS:
        sub = getattr(cfg, sec)
        hints = typing.get_type_hints(type(sub))
        for f in dataclasses.fields(sub):
            _check_literal(p, f"{sec}.{f.name}", getattr(sub, f.name), hints[f.name])
    for check in (_check_guidance, _check_render, _check_files, _check_texture, _check_optim, _check_output):
        check(cfg, p, check_files)
    if p:
        raise ConfigError(p)
    return cfg


def _check_guidance(cfg: RunConfig, p: list[str], check_files: bool) -> None:
    g, t = cfg.guidance, cfg.texture
    if cfg.optim.objective == "guidance":
        if not g.text.strip():
            p.append("guidance.text (--text) must be a non-empty prompt")
        if not (g.rgb_sds or g.normal_sds):
            p.append("guidance: rgb_sds and normal_sds are both off, nothing would be optimised")
    if g.loss == "vsd" and g.family != "sdxl":
        p.append("guidance.loss=vsd needs the sdxl family (the original: VSD is SDXL-only; add -O4)")
    if g.loss == "vsd" and g.controlnets:
        p.append("guidance.loss=vsd cannot be combined with ControlNets")
    for c in g.controlnets:
        if c not in CONTROL_TYPES and "/" not in c and not os.path.isdir(c):
            p.append(f"guidance.controlnets: {c!r} is not one of {', '.join(CONTROL_TYPES)}, a hub id or a directory")
    if g.controlnets and len(g.control_scales) != len(g.controlnets):
        p.append(
            f"guidance.control_scales must have one entry per ControlNet ({len(g.controlnets)}), "
            f"got {len(g.control_scales)}"
        )
    if "shuffle" in g.controlnets and not g.ref_path:
        p.append("guidance.controlnets includes shuffle, which needs guidance.ref_path (--ref_path)")
    if g.guidance_scale < 0:
        p.append(f"guidance.guidance_scale must be >= 0, got {g.guidance_scale}")
    if not 0.0 <= g.cfg_rescale <= 1.0:
        p.append(f"guidance.cfg_rescale must be in [0, 1], got {g.cfg_rescale}")
    lo, hi = g.t_range
    if not 0.0 < lo < hi <= 1.0:
        p.append(f"guidance.t_range must satisfy 0 < lo < hi <= 1, got {g.t_range}")
    if g.t_range_end is not None and not 0.0 <= g.t_range_end[0] <= g.t_range_end[1] <= 1.0:
        p.append(f"guidance.t_range_end must satisfy 0 <= lo <= hi <= 1 or be None, got {g.t_range_end}")
    if not 0.0 <= g.vsd_t_range[0] <= g.vsd_t_range[1] <= 1.0:
        p.append(f"guidance.vsd_t_range must satisfy 0 <= lo <= hi <= 1, got {g.vsd_t_range}")
    if g.resolution is not None and g.resolution < 8:
        p.append(f"guidance.resolution must be >= 8 or None, got {g.resolution}")
    if not 0.0 < g.angle_front <= 180.0 or not 0.0 <= g.angle_overhead < 90.0:
        p.append(
            f"guidance.angle_front must be in (0, 180] and angle_overhead in [0, 90), got "
            f"{g.angle_front}, {g.angle_overhead}"
        )
    if not 0.0 <= g.vsd_camera_dropout <= 1.0:
        p.append(f"guidance.vsd_camera_dropout must be in [0, 1], got {g.vsd_camera_dropout}")
    if g.bgt_r <= 0 or g.vsd_lora_rank < 1:
        p.append(f"guidance.bgt_r must be > 0 and vsd_lora_rank >= 1, got {g.bgt_r}, {g.vsd_lora_rank}")
    if g.pgc_tau is not None and g.pgc_tau < 0:
        p.append(f"guidance.pgc_tau must be >= 0 or None, got {g.pgc_tau}")
    if g.latent_clamp is not None and g.latent_clamp < 0:
        p.append(f"guidance.latent_clamp must be >= 0 or None, got {g.latent_clamp}")
    if g.latent and t.kind == "uv":
        p.append("guidance.latent needs texture.kind=field (the 4-channel latent texture is a field)")


def _check_render(cfg: RunConfig, p: list[str], check_files: bool) -> None:
    r = cfg.render
    if r.resolution < 8 or r.resolution > 4096:
        p.append(f"render.resolution must be in [8, 4096], got {r.resolution}")
    for name in ("radius_range", "polar_range", "focal_range", "focal_range_fine"):
        a, b = getattr(r, name)
        if not (0 < a <= b):
            p.append(f"render.{name} must satisfy 0 < lo <= hi, got {(a, b)}")
    if not 0.0 <= r.bg_color <= 1.0:
        p.append(f"render.bg_color must be in [0, 1], got {r.bg_color}")
    if not 0.0 <= r.uniform_sphere_rate <= 1.0:
        p.append(f"render.uniform_sphere_rate must be in [0, 1], got {r.uniform_sphere_rate}")


def _check_files(cfg: RunConfig, p: list[str], check_files: bool) -> None:
    g, r, m = cfg.guidance, cfg.render, cfg.mesh
    if not m.path:
        p.append("mesh.path (--mesh_path) is required")
    elif check_files and not os.path.isfile(m.path):
        p.append(f"mesh.path: no such file {m.path!r}")
    if check_files and g.ref_path and not os.path.exists(g.ref_path):
        p.append(f"guidance.ref_path: no such file or directory {g.ref_path!r}")
    if check_files and r.background == "scenery" and not os.path.isfile(r.bg_image):
        p.append(f"render.bg_image: no such file {r.bg_image!r} (needed by render.background=scenery)")
    for name, path in (("guidance.ref_path", g.ref_path), ("render.bg_image", r.bg_image)):
        if check_files and path and os.path.isfile(path) and (name == "guidance.ref_path" or r.background == "scenery"):
            _check_image_format(name, path, p)


def _check_image_format(name: str, path: str, p: list[str]) -> None:
    """A user's image must be one of IMAGE_FORMATS (its header is read, not the pixels)."""
    from PIL import Image

    try:
        with Image.open(path, formats=IMAGE_FORMATS):
            pass
    except Exception as e:  # noqa: BLE001 - any refusal of the file becomes one line
        p.append(f"{name}: {path!r} is not a {', '.join(IMAGE_FORMATS)} image ({type(e).__name__})")


def _check_texture(cfg: RunConfig, p: list[str], check_files: bool) -> None:
    t = cfg.texture
    if t.kind == "uv" and not 16 <= t.uv_resolution <= 8192:
        p.append(f"texture.uv_resolution must be in [16, 8192], got {t.uv_resolution}")
    if t.uv_levels < 1 or (t.kind == "uv" and t.uv_resolution >> (t.uv_levels - 1) < 4):
        p.append(f"texture.uv_levels must be >= 1 and leave the coarsest level >= 4 texels, got {t.uv_levels}")
    if not 16 <= t.export_resolution <= 8192:
        p.append(f"texture.export_resolution must be in [16, 8192], got {t.export_resolution}")
    if not 1 <= t.field_levels <= 32 or not 8 <= t.field_log2_table_size <= 24 or t.field_finest_resolution < 16:
        p.append(
            "texture.field_levels must be in [1, 32], field_log2_table_size in [8, 24], field_finest_resolution >= 16"
        )
    if t.dilation < 0:
        p.append(f"texture.dilation must be >= 0, got {t.dilation}")


def _check_optim(cfg: RunConfig, p: list[str], check_files: bool) -> None:
    o = cfg.optim
    if o.iters < 1:
        p.append(f"optim.iters (--iters) must be >= 1, got {o.iters}")
    if o.batch_size < 1:
        p.append(f"optim.batch_size (--bs) must be >= 1, got {o.batch_size}")
    if o.lr_texture <= 0 or o.lr_geometry < 0:
        p.append(f"optim learning rates must be positive, got lr_texture={o.lr_texture}, lr_geometry={o.lr_geometry}")
    if not (0 <= o.betas[0] < 1 and 0 <= o.betas[1] < 1):
        p.append(f"optim.betas must be in [0, 1), got {o.betas}")
    if o.grad_clip is not None and o.grad_clip < 0:
        p.append(f"optim.grad_clip must be >= 0 or None, got {o.grad_clip}")


def _check_output(cfg: RunConfig, p: list[str], check_files: bool) -> None:
    out = cfg.output
    if not out.workspace:
        p.append("output.workspace (--workspace) must not be empty")
    if out.val_every < 0 or out.ckpt_every < 0:
        p.append("output.val_every and output.ckpt_every must be >= 0")
    if out.resume and out.force:
        p.append("output.resume and output.force are mutually exclusive (force would delete what resume continues)")
    if out.turntable_frames < 0 or out.fps < 1:
        p.append("output.turntable_frames must be >= 0 and output.fps >= 1")
    gpus = [x.strip() for x in cfg.runtime.gpus.split(",") if x.strip()]
    if not gpus or not all(x.isdigit() for x in gpus):
        p.append(f"runtime.gpus (--gpus) must be comma-separated device ids such as '0,1', got {cfg.runtime.gpus!r}")
