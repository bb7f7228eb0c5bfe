"""``validate(cfg)``: every check of a RunConfig, collected into one ConfigError. Imports config.schema only."""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import types
import typing
from typing import Any, Literal

from pgc_fast.config.schema import (
    BUILTIN_MODELS,
    CLIP_BUILTINS,
    CONTROL_TYPES,
    DEFAULT_CONTROLNETS,
    IMAGE_FORMATS,
    MODEL_ALIASES,
    SECTIONS,
    ZERO123_ALIASES,
    ZERO123_BUILTINS,
    ConfigError,
    RunConfig,
)

MESH_EXTENSIONS = (".obj", ".ply", ".glb", ".gltf")
"""What pgc_fast.mesh.load_mesh reads."""
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
SEED_MAX = 2**32 - 1
"""Seeds go to numpy's global RNG too, which takes 32 bits (the original seeded it with seed + rank)."""


def _check_literal(problems: list[str], where: str, value: Any, hint: Any) -> None:
    args = typing.get_args(hint)
    if typing.get_origin(hint) is Literal and value not in args:
        problems.append(f"{where} must be one of {', '.join(map(repr, args))}, got {value!r}")


def unsupported_features(cfg: RunConfig) -> list[str]:
    """Features of the original that belong to later work, each as a clear 'not supported yet' sentence (none left
    in the configuration: --n_targets is refused by the CLI)."""
    return []


TET_RES_RANGE = (16, 512)
"""mesh.tet_res accepted (pgc_fast.train.dmtet; the original shipped the 256 grid only)."""


def _check_shape(cfg: RunConfig, p: list[str], check_files: bool) -> None:
    """DMTet's settings, and the combinations of shape optimisation that cannot run (the original's included)."""
    m, g = cfg.mesh, cfg.guidance
    if g.normal_sds and m.shape == "fixed":
        p.append(
            "guidance.normal_sds (normal-map SDS) optimises the shape, which the fixed mesh keeps: use "
            "mesh.shape=dmtet (the original's --fix_mesh / -O2 turned it off)"
        )
    if not TET_RES_RANGE[0] <= m.tet_res <= TET_RES_RANGE[1]:
        p.append(f"mesh.tet_res (--tet_res) must be in [{TET_RES_RANGE[0]}, {TET_RES_RANGE[1]}], got {m.tet_res}")
    if m.lambda_smooth < 0 or m.lambda_laplacian < 0 or m.smooth_iters < 0:
        p.append(
            f"mesh.lambda_smooth, mesh.lambda_laplacian and mesh.smooth_iters must be >= 0, got "
            f"{m.lambda_smooth}, {m.lambda_laplacian}, {m.smooth_iters}"
        )
    if m.sdf_init_iters < 0 or m.sdf_init_points < 1:
        p.append(
            f"mesh.sdf_init_iters must be >= 0 and sdf_init_points >= 1, got {m.sdf_init_iters}, {m.sdf_init_points}"
        )
    if cfg.render.albedo_iters < 0:
        p.append(f"render.albedo_iters (--albedo_iters) must be >= 0, got {cfg.render.albedo_iters}")
    if m.shape != "dmtet":
        return
    if cfg.texture.kind == "uv":
        p.append(
            "texture.kind=uv cannot follow a DMTet shape (its surface, and so any UV layout, changes every step): "
            "use texture.kind=field (--texture field); the result is still exported with a baked UV texture"
        )
    if g.loss == "vsd" and g.normal_sds:
        p.append(
            "guidance.loss=vsd (--vsd) with normal-map SDS: the original cannot run it (its VSD guidance has no "
            "normal-map step and crashes); add --no_normal to refine the shape with VSD on RGB alone"
        )


def validate(cfg: RunConfig, *, check_files: bool = True) -> RunConfig:
    """Check ``cfg``; collect every problem and raise one :class:`ConfigError`. Returns ``cfg`` unchanged.

    Every field is checked against its type first (a number must be a finite int or float, a tuple its length);
    wrong types stop there (the range checks below compare values), non-finite numbers are reported with the rest.

    Args:
        cfg: the configuration.
        check_files: also check that input files (mesh, reference image, scenery) exist and are readable.
    """
    wrong_type, not_finite = check_types(cfg)
    if wrong_type:
        raise ConfigError(wrong_type + not_finite)
    p: list[str] = list(unsupported_features(cfg)) + not_finite
    for sec in SECTIONS:
        sub = getattr(cfg, sec)
        hints = typing.get_type_hints(type(sub))
        for f in dataclasses.fields(sub):
            _check_literal(p, f"{sec}.{f.name}", getattr(sub, f.name), hints[f.name])
    for check in (
        _check_guidance,
        _check_guidance_numbers,
        _check_models,
        _check_render,
        _check_files,
        _check_texture,
        _check_pbr,
        _check_shape,
        _check_optim,
        _check_output,
    ):
        check(cfg, p, check_files)
    # A non-finite field fails its range check too; say it once.
    nan_fields = {msg.split(" ")[0] for msg in not_finite}
    p = [msg for msg in p if msg in not_finite or msg.split(" ")[0] not in nan_fields]
    if p:
        raise ConfigError(p)
    return cfg


def _type_problem(value: Any, hint: Any) -> str | None:
    """'type' or 'finite' when ``value`` does not conform to ``hint`` (None when it does)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        return _type_problem(value, next(a for a in args if a is not type(None)))
    if origin is Literal:
        return None  # _check_literal names the choices
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, tuple):
            return "type"
        elems = [args[0]] * len(value) if (len(args) == 2 and args[1] is Ellipsis) else list(args)
        if len(elems) != len(value):
            return "type"
        found = [_type_problem(v, h) for v, h in zip(value, elems, strict=True)]
        return "type" if "type" in found else ("finite" if "finite" in found else None)
    if hint is bool:
        return None if isinstance(value, bool) else "type"
    if hint is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else "type"
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return "type"
        return None if math.isfinite(value) else "finite"
    if hint is str:
        return None if isinstance(value, str) else "type"
    return None


def _type_name(hint: Any) -> str:
    return str(hint).replace("typing.", "").replace("<class '", "").replace("'>", "")


def check_types(cfg: RunConfig) -> tuple[list[str], list[str]]:
    """(fields of the wrong type, numbers that are not finite): every field of every section, against its hint."""
    wrong, not_finite = [], []
    for sec in SECTIONS:
        sub = getattr(cfg, sec)
        hints = typing.get_type_hints(type(sub))
        for f in dataclasses.fields(sub):
            v = getattr(sub, f.name)
            kind = _type_problem(v, hints[f.name])
            if kind == "type":
                wrong.append(f"{sec}.{f.name} must be of type {_type_name(hints[f.name])}, got {v!r}")
            elif kind == "finite":
                not_finite.append(f"{sec}.{f.name} must be finite (not nan or inf), got {v!r}")
    return wrong, not_finite


def did_you_mean(word: str, choices: list[str] | tuple[str, ...]) -> str:
    """'; did you mean 'x'?' for the closest of ``choices`` (difflib), or '' when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.75)
    return f"; did you mean {close[0]!r}?" if close else ""


def _check_guidance(cfg: RunConfig, p: list[str], check_files: bool) -> None:
    g = cfg.guidance
    if cfg.optim.objective == "guidance":
        if not g.text.strip() and not g.zero123:
            p.append("guidance.text (--text) must be a non-empty prompt")
        if not (g.rgb_sds or g.normal_sds):
            p.append("guidance: rgb_sds and normal_sds are both off, nothing would be optimised")
    if g.loss == "vsd" and g.family != "sdxl":
        p.append("guidance.loss=vsd needs the sdxl family (the original: VSD is SDXL-only; add -O4)")
    if g.loss == "vsd" and g.controlnets:
        p.append("guidance.loss=vsd cannot be combined with ControlNets")
    if g.loss == "vsd" and g.fp8:
        p.append("guidance.fp8 cannot be combined with loss=vsd (VSD trains a LoRA on the UNet's attention layers)")
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
    if g.latent:
        p.extend(latent_problems(cfg))
    _check_image_guidance(cfg, p)


def _check_image_guidance(cfg: RunConfig, p: list[str]) -> None:
    """Zero123 (-O3 / --zero123) and the CLIP reference loss (--guidance_o clip) need a reference image."""
    g = cfg.guidance
    if g.zero123 and not g.ref_path:
        p.append("guidance.zero123 (-O3 / --zero123) needs a reference image: guidance.ref_path (--ref_path)")
    if g.clip_reference and not g.ref_path:
        p.append("guidance.clip_reference (--guidance_o clip) needs a reference image: guidance.ref_path (--ref_path)")
    if g.zero123 and g.latent:
        p.append("guidance.zero123 cannot be combined with guidance.latent: Zero123 scores RGB renders")
    if g.zero123 and g.normal_sds and not g.text.strip():
        p.append("guidance.normal_sds needs a prompt (--text): with guidance.zero123 it is the text model's term")
    if g.zero123_guidance_scale < 0 or g.clip_reference < 0 or g.zero123_weight <= 0:
        p.append(
            f"guidance.zero123_guidance_scale and clip_reference must be >= 0 and zero123_weight > 0, got "
            f"{g.zero123_guidance_scale}, {g.clip_reference}, {g.zero123_weight}"
        )


def latent_problems(cfg: RunConfig) -> list[str]:
    """What latent mode (Latent-NeRF: the texture renders 4 latent channels, decoded by the VAE) cannot combine
    with, each with its reason."""
    g, t, r = cfg.guidance, cfg.texture, cfg.render
    p = []
    if t.kind != "field" or t.material != "albedo":
        p.append(
            "guidance.latent needs texture.kind=field and texture.material=albedo (the 4-channel latent texture "
            "is a field with no material)"
        )
    if r.shading != "albedo":
        p.append(
            f"guidance.latent needs render.shading=albedo (lighting a latent is meaningless; the original's "
            f"--latent forced --albedo), got {r.shading!r}"
        )
    if r.background == "scenery":
        p.append(
            "guidance.latent renders over the zero latent: render.background=scenery (an RGB image) does not "
            "apply (the original crashed on this combination); use render.background=color"
        )
    if g.ref_path:
        p.append(
            "guidance.latent cannot use guidance.ref_path: the reference-view loss compares an RGB image with "
            "the render, which is 4 latent channels here (the original crashed on this combination)"
        )
    if t.init_from_vertex_colors:
        p.append(
            "guidance.latent cannot pre-fit texture.init_from_vertex_colors: vertex colours are RGB, the "
            "texture holds latents (the original skipped the pre-fit in latent mode)"
        )
    if g.lambda_saturation:
        p.append(
            "guidance.latent cannot use guidance.lambda_saturation: it measures the RGB saturation of the render, "
            "which is 4 latent channels here"
        )
    if cfg.optim.objective != "guidance":
        p.append("guidance.latent needs optim.objective=guidance (the guidance's VAE decodes the latent renders)")
    return p


def _check_guidance_numbers(cfg: RunConfig, p: list[str], check_files: bool) -> None:
    g = cfg.guidance
    nonneg = ("normal_guidance_scale", "bgt_rgb_weight", "lambda_ref", "lambda_saturation", "latent_clip")
    for name in nonneg:
        v = getattr(g, name)
        if v is not None and v < 0:
            p.append(f"guidance.{name} must be >= 0, got {v}")
    for name in ("grad_scale", "vsd_lora_lr"):
        if getattr(g, name) <= 0:
            p.append(f"guidance.{name} must be > 0, got {getattr(g, name)}")
    if not 0.0 < g.init_time <= 1.0 or not 0.0 <= g.bgt_end_time <= 1.0:
        p.append(
            f"guidance.init_time must be in (0, 1] and bgt_end_time in [0, 1], got {g.init_time}, {g.bgt_end_time}"
        )
    if not 0 <= g.ssd_m <= 1000:
        p.append(f"guidance.ssd_m must be in [0, 1000] (a timestep), got {g.ssd_m}")
    if not 0.0 <= g.depth_floor < 1.0:
        p.append(f"guidance.depth_floor must be in [0, 1), got {g.depth_floor}")
    if any(s < 0 for s in g.control_scales):
        p.append(f"guidance.control_scales (--control_scale) must be >= 0, got {g.control_scales}")


def _is_pathlike(name: str) -> bool:
    """A local path rather than a hub id ('org/name'): starts with / . ~, or has more than one '/'."""
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or os.sep in name.replace("/", "")


def _model_problem(where: str, name: str, known: list[str]) -> str | None:
    """A guidance model name that is neither built in, an alias, an existing directory nor a hub id."""
    if name in known or os.path.isdir(os.path.expanduser(name)):
        return None
    if _is_pathlike(name):
        return f"{where}: no such directory {name!r}"
    if "/" not in name:
        return (
            f"{where}: {name!r} is not a built-in model ({', '.join(BUILTIN_MODELS)}), an alias "
            f"({', '.join(MODEL_ALIASES)}), a local directory or a hub id 'org/name'" + did_you_mean(name, known)
        )
    return None


def _check_models(cfg: RunConfig, p: list[str], check_files: bool) -> None:
    """Model, VAE and ControlNet names, before anything is downloaded or loaded."""
    g = cfg.guidance
    known = [*BUILTIN_MODELS, *MODEL_ALIASES]
    for where, name in (("guidance.model (--model)", g.model), ("guidance.vae", g.vae)):
        if name and not (where == "guidance.vae" and name in ("none", "auto")):
            problem = _model_problem(where, name, known if where.startswith("guidance.model") else [])
            if problem:
                p.append(problem)
    if g.zero123:
        _check_zero123_model(g.zero123_model, g.zero123_config, p, check_files)
    if g.clip_reference and g.clip_model not in CLIP_BUILTINS:
        if problem := _model_problem("guidance.clip_model", g.clip_model, [*CLIP_BUILTINS]):
            p.append(problem)
    builtin = g.model in BUILTIN_MODELS
    for spec in g.controlnets:
        kind, _, repo = spec.partition("=")
        if "=" in spec:
            if kind not in CONTROL_TYPES:
                p.append(f"guidance.controlnets: {spec!r}: the kind must be one of {', '.join(CONTROL_TYPES)}")
            elif not builtin and (problem := _model_problem(f"guidance.controlnets ({kind})", repo, [])):
                p.append(problem)
        elif kind in CONTROL_TYPES and not builtin and (g.family, kind) not in DEFAULT_CONTROLNETS:
            have = ", ".join(k for f, k in DEFAULT_CONTROLNETS if f == g.family)
            p.append(
                f"guidance.controlnets: there is no default {kind!r} ControlNet for the {g.family} family "
                f"(defaults: {have}); pass '{kind}=<hub id or local dir>' (--control_type {kind}=org/name)"
            )


def _check_zero123_model(name: str, yaml: str | None, p: list[str], check_files: bool) -> None:
    """A Zero123 source: built in, an alias, an ldm checkpoint file (+ YAML), a directory or a hub id."""
    where = "guidance.zero123_model"
    known = [*ZERO123_BUILTINS, *ZERO123_ALIASES]
    if os.path.splitext(name)[1] in (".ckpt", ".pt", ".pth", ".safetensors"):
        if check_files and not os.path.isfile(name):
            p.append(f"{where}: no such checkpoint file {name!r}")
    elif name not in known and not os.path.isdir(os.path.expanduser(name)):
        if _is_pathlike(name):
            p.append(f"{where}: no such directory {name!r}")
        elif "/" not in name:
            p.append(
                f"{where}: {name!r} is not a built-in model ({', '.join(ZERO123_BUILTINS)}), an alias "
                f"({', '.join(ZERO123_ALIASES)}), an ldm checkpoint, a local directory or a hub id 'org/name'"
                + did_you_mean(name, known)
            )
    if yaml is not None and check_files and not os.path.isfile(yaml):
        p.append(f"guidance.zero123_config: no such file {yaml!r}")


def _check_render(cfg: RunConfig, p: list[str], check_files: bool) -> None:
    r = cfg.render
    if r.resolution < 8 or r.resolution > 4096:
        p.append(f"render.resolution must be in [8, 4096], got {r.resolution}")
    for name in ("radius_range", "polar_range", "focal_range", "focal_range_fine"):
        a, b = getattr(r, name)
        if not (0 < a <= b):
            p.append(f"render.{name} must satisfy 0 < lo <= hi, got {(a, b)}")
    if r.polar_range[1] > 180:
        p.append(f"render.polar_range must stay within (0, 180] degrees, got {r.polar_range}")
    if not 0.0 <= r.bg_color <= 1.0:
        p.append(f"render.bg_color must be in [0, 1], got {r.bg_color}")
    if not 0.0 <= r.uniform_sphere_rate <= 1.0:
        p.append(f"render.uniform_sphere_rate must be in [0, 1], got {r.uniform_sphere_rate}")


def _image_problem(where: str, path: str) -> str | None:
    """A missing image, or one that is not a plain raster image Pillow reads without running another program
    (IMAGE_FORMATS; Pillow's EPS reader runs Ghostscript). Only the header is read."""
    if not os.path.isfile(path):
        return f"{where}: no such file {path!r}"
    try:
        from PIL import Image

        with Image.open(path, formats=IMAGE_FORMATS) as im:
            im.size  # noqa: B018 - the header is parsed here
    except Exception as e:  # noqa: BLE001 - any decoder error means "not an image we can read"
        return (
            f"{where}: {path!r} is not a {', '.join(IMAGE_FORMATS)} image we can read "
            f"({type(e).__name__}: {str(e)[:120]})"
        )
    return None


def _check_files(cfg: RunConfig, p: list[str], check_files: bool) -> None:
    g, r, m = cfg.guidance, cfg.render, cfg.mesh
    ext = os.path.splitext(m.path)[1].lower()
    if not m.path:
        p.append("mesh.path (--mesh_path) is required")
    elif ext not in MESH_EXTENSIONS:
        p.append(
            f"mesh.path (--mesh_path): unknown mesh format {ext or '(no extension)'!r} in {m.path!r} "
            f"(pgc-fast reads {', '.join(MESH_EXTENSIONS)})"
        )
    elif check_files and not os.path.isfile(m.path):
        p.append(f"mesh.path (--mesh_path): no such file {m.path!r}")
    if check_files and g.ref_path:
        ref = g.ref_path
        if os.path.isdir(ref):
            found = sorted(f for f in os.listdir(ref) if os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS)
            if not found:
                p.append(f"guidance.ref_path (--ref_path): the directory {ref!r} holds no .png/.jpg image")
            ref = os.path.join(ref, found[0]) if found else ""
        if ref and (problem := _image_problem("guidance.ref_path (--ref_path)", ref)):
            p.append(problem)
    if check_files and r.background == "scenery" and r.bg_image:
        if problem := _image_problem(
            "render.bg_image (--render.bg_image, used by render.background=scenery)", r.bg_image
        ):
            p.append(problem)


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
    if t.latent_bake_views < 1:
        p.append(f"texture.latent_bake_views must be >= 1, got {t.latent_bake_views}")
    if t.dilation < 0 or t.init_iters < 0:
        p.append(f"texture.dilation and texture.init_iters must be >= 0, got {t.dilation}, {t.init_iters}")


ENV_EXTENSIONS = (".hdr", ".exr")
"""What pgc_fast.mesh.read_hdr decodes (environment lights); the contents are checked by train/preflight.py."""


def _check_pbr(cfg: RunConfig, p: list[str], check_files: bool) -> None:
    """The pbr section, checked whether or not texture.material = pbr (a config file may carry it unused)."""
    b, t = cfg.pbr, cfg.texture
    if t.material == "pbr" and t.kind != "field":
        p.append("texture.material=pbr (--pbr) needs texture.kind=field (the material is a hash-grid field)")
    if t.material == "pbr" and cfg.guidance.latent:
        p.append("texture.material=pbr (--pbr) cannot be combined with guidance.latent (--latent)")
    res = b.env_resolution
    if res < 64 or res > 2048 or res & (res - 1):
        p.append(f"pbr.env_resolution must be a power of two in [64, 2048], got {res}")
    if b.env_scale <= 0 or b.lambda_kd_smooth < 0:
        p.append(f"pbr.env_scale must be > 0 and pbr.lambda_kd_smooth >= 0, got {b.env_scale}, {b.lambda_kd_smooth}")
    lo, hi = b.kd_range
    if not 0.0 <= lo <= hi <= 1.0:
        p.append(f"pbr.kd_range must satisfy 0 <= lo <= hi <= 1, got {b.kd_range}")
    if not all(0.0 <= a <= c <= 1.0 for a, c in zip(b.ks_min, b.ks_max, strict=True)):
        p.append(
            f"pbr.ks_min / pbr.ks_max (occlusion, roughness, metallic) must satisfy 0 <= min <= max <= 1 per channel, "
            f"got {b.ks_min}, {b.ks_max}"
        )
    if b.env_path is not None and t.material == "pbr":
        ext = os.path.splitext(b.env_path)[1].lower()
        if ext not in ENV_EXTENSIONS:
            p.append(
                f"pbr.env_path (--env_path): {b.env_path!r} is not a Radiance .hdr or OpenEXR .exr file "
                f"(extension {ext or '(none)'!r})"
            )
        elif check_files and not os.path.isfile(b.env_path):
            p.append(f"pbr.env_path (--env_path): no such file {b.env_path!r}")


def _check_optim(cfg: RunConfig, p: list[str], check_files: bool) -> None:
    o = cfg.optim
    if o.iters < 1:
        p.append(f"optim.iters (--iters) must be >= 1, got {o.iters}")
    if o.batch_size < 1:
        p.append(f"optim.batch_size (--bs) must be >= 1, got {o.batch_size}")
    if o.lr_texture <= 0 or o.lr_geometry < 0:
        p.append(f"optim learning rates must be positive, got lr_texture={o.lr_texture}, lr_geometry={o.lr_geometry}")
    if o.grid_lr_scale <= 0 or o.eps <= 0 or o.weight_decay < 0:
        p.append(
            f"optim.grid_lr_scale and optim.eps must be > 0 and optim.weight_decay >= 0, got "
            f"{o.grid_lr_scale}, {o.eps}, {o.weight_decay}"
        )
    if not (0 <= o.betas[0] < 1 and 0 <= o.betas[1] < 1):
        p.append(f"optim.betas must be in [0, 1), got {o.betas}")
    if o.grad_clip is not None and o.grad_clip < 0:
        p.append(f"optim.grad_clip must be >= 0 or None, got {o.grad_clip}")
    if not 0 <= o.seed <= SEED_MAX:
        p.append(f"optim.seed (--seed) must be an integer in [0, 2^32 - 1], got {o.seed}")


def _check_output(cfg: RunConfig, p: list[str], check_files: bool) -> None:
    out = cfg.output
    if not out.workspace:
        p.append("output.workspace (--workspace) must not be empty")
    if out.val_every < 0 or out.ckpt_every < 0:
        p.append("output.val_every and output.ckpt_every must be >= 0")
    if out.resume and out.force:
        p.append("output.resume and output.force are mutually exclusive (force would delete what resume continues)")
    if out.turntable_frames < 0 or not 1 <= out.fps <= 240:
        p.append(
            f"output.turntable_frames must be >= 0 and output.fps in [1, 240], got {out.turntable_frames}, {out.fps}"
        )
    if not 8 <= out.turntable_resolution <= 4096:
        p.append(f"output.turntable_resolution must be in [8, 4096], got {out.turntable_resolution}")
    if out.val_resolution is not None and not 8 <= out.val_resolution <= 4096:
        p.append(f"output.val_resolution must be None or in [8, 4096], got {out.val_resolution}")
    gpus = [x.strip() for x in cfg.runtime.gpus.split(",") if x.strip()]
    if not gpus or not all(x.isdigit() for x in gpus):
        p.append(f"runtime.gpus (--gpus) must be comma-separated device ids such as '0,1', got {cfg.runtime.gpus!r}")
    elif len(set(gpus)) != len(gpus):
        p.append(f"runtime.gpus (--gpus) lists a device twice: {cfg.runtime.gpus!r}")
