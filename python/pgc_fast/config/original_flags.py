"""The original PGC-3D ``main.py`` options: flags and defaults, presets ``-O0 … -O4`` with the knock-on rules in
the original's code order (the original's main.py, its argparse flags and -O preset block), and the mapping of the
result onto a
:class:`pgc_fast.config.RunConfig`. Used by the CLI (to accept the original's commands as written) and by
:data:`pgc_fast.config.PRESETS` (so the named presets mean exactly what the flag combinations meant).
"""

from __future__ import annotations

import argparse
import math
from typing import Any

from pgc_fast.config import schema as C

# name → (default, kind). kind: "bool" (store_true), "str", "int", "float", "floats" (nargs='+'), "strs" (nargs='+'),
# "float2" (nargs=2). Defaults are the original's (the original's main.py, its argparse flags and -O preset block).
ORIGINAL_FLAGS: dict[str, tuple[Any, str]] = {
    "text": (None, "str"),
    "negative": ("", "str"),
    "O0": (False, "bool"),
    "O1": (False, "bool"),
    "O2": (False, "bool"),
    "O3": (False, "bool"),
    "O4": (False, "bool"),
    "save_mesh": (False, "bool"),
    "eval_interval": (1, "int"),
    "workspace": ("workspace", "str"),
    "guidance": ("stable-diffusion", "str"),
    "guidance_o": ("stable-diffusion", "str"),
    "guidance_scale": (100.0, "float"),
    "control_type": (["depth"], "strs"),
    "control_scale": ([1.0], "floats"),
    "sd_version": ("2.1", "str"),
    "seed": (0, "int"),
    "mesh_path": ("", "str"),
    "canonicalize": (False, "bool"),
    "optimizer": ("adam", "str"),
    "scheduler": ("ddpm", "str"),
    "fp16": (False, "bool"),
    "no_normal": (False, "bool"),
    "only_normal": (False, "bool"),
    "zero123": (False, "bool"),
    "ref_path": ("", "str"),
    "lambda_ref": (0.1, "float"),
    "dreamtime": (False, "bool"),
    "init_time": (0.681, "float"),
    "pbr": (False, "bool"),
    "no_perturbed_nrm": (False, "bool"),
    "ks_min": ([0.0, 0.1, 0.0], "floats"),
    "ks_max": ([0.0, 0.98, 0.0], "floats"),
    "fix_mesh": (False, "bool"),
    "init_texture": (False, "bool"),
    "pos_perturb": (False, "bool"),
    "latent": (False, "bool"),
    "vsd": (False, "bool"),
    "bgt": (False, "bool"),
    "csd": (False, "bool"),
    "ssd": (False, "bool"),
    "cfg_rescale": (False, "bool"),
    "bg_color": (1.0, "float"),
    "bg_scenery": (False, "bool"),
    "lambda_saturation": (0.0, "float"),
    "lambda_smooth": (2e6, "float"),
    "iters": (2000, "int"),
    "smooth_iters": (1000, "int"),
    "lr_fine": ([1e-5, 1e-3], "float2"),
    "albedo": (False, "bool"),
    "albedo_iters": (0, "int"),
    "uniform_sphere_rate": (0.0, "float"),
    "weight_choice": (0, "int"),
    "grad_clip": (-1.0, "float"),
    "grad_clip_rgb": (-1.0, "float"),
    "grad_clip_latent": (-1.0, "float"),
    "grad_suppress_type": (0, "int"),
    "gpus": ("0", "str"),  # the original defaulted to "1", the second GPU (a bug of the original)
    "bs": (4, "int"),
    "jitter_pose": (False, "bool"),
    "res_fine": (512, "int"),
    "tet_res": (256, "int"),
    "radius_range": ([2.0, 2.5], "float2"),
    "focal_range": ([0.7, 1.35], "float2"),
    "focal_range_fine": ([1.0, 1.6], "float2"),
    "dir_text": (False, "bool"),
    "suppress_face": (False, "bool"),
    "single_stage": (False, "bool"),
    "n_targets": (0, "int"),
    "angle_overhead": (30.0, "float"),
    "angle_front": (90.0, "float"),
    "ssd_M": (100, "int"),
    "left": (False, "bool"),
    # Actions rather than settings: render a trained workspace (cli/generate_test.py) and which checkpoint.
    "test": (False, "bool"),
    "ckpt": ("latest", "str"),
}
# Parsed and ignored, as in the original ("dead" flags), or superseded by pgc-fast's own mechanism.
DEAD_FLAGS: dict[str, str] = {
    "test_mesh": "bool",
    "load_finetuned": "bool",
    "from_coarse": "bool",
    "no_MLP": "bool",
    "lambda_entropy": "float",
    "lambda_opacity": "float",
    "lambda_orient": "float",
    "lambda_mask": "float",
    "warmup_iters": "int",
    "refine_iters": "int",
    "lr": "float",
    "w": "int",
    "h": "int",
    "dt_gamma": "float",
    "min_near": "float",
    "fovy_range": "float2",
    "local_rank": "int",
    "port": "int",
    "local_prob": "float",
    "ls_all": "bool",
}
# Why a flag of DEAD_FLAGS is ignored, where it did something in the original (default: it did nothing there).
DEAD_FLAG_REASONS: dict[str, str] = {
    "local_rank": "torchrun gives each process its rank (--gpus relaunches through it)",
    "port": "torchrun picks the rendezvous port (--gpus relaunches through it)",
    "local_prob": "it only acts with --n_targets > 0 (GMM local-part cameras)",
    "ls_all": "it only acts with --n_targets > 0 (GMM local-part cameras)",
}
# Flags of the original that pgc-fast deliberately does not reproduce: name -> (kind, the value at which the flag
# does nothing, why). Given at that value they are ignored with a note; any other value is refused with the reason.
# The README's "Flags of the original not reproduced" lists the same.
NOT_REPRODUCED: dict[str, tuple[str, Any, str]] = {
    "use_refiner": (
        "bool",
        False,
        "the original fed its RGB render, resized to 128x128, to the SDXL refiner as if it were latents (a bug of "
        "the original), so its 'refined' test images refined nothing",
    ),
    "reconstruction": (
        "bool",
        False,
        "fitting to posed images runs from Python: run(cfg, objective=MSEObjective(images, cameras)); the "
        "original's data_root layout stores poses in its mirrored camera convention",
    ),
    "data_root": ("str", "", "only --reconstruction read it (see there)"),
    "mesh_name": (
        "str",
        "",
        "exports have fixed names in the workspace (mesh.obj, mesh.mtl, texture.png, mesh.glb); name runs with "
        "--workspace",
    ),
    "mesh_type": (
        "str",
        "",
        "exports are always a UV-textured mesh; 'vertex_color' only switched the UV export off in the original",
    ),
    "bound": (
        "float",
        1.0,
        "the fields cover [-1, 1]^3, the original's default (--canonicalize fits the mesh in [-0.8, 0.8]^3)",
    ),
    "ckpt_fine": (
        "str",
        "scratch",
        "the original's checkpoints are pickles (torch.save), which pgc-fast never loads (unpickling can run "
        "code); continue a pgc-fast run with --resume",
    ),
}
_PGC_VARIANTS: tuple[str, ...] = ("clip", "value", "global", "sigmoid", "soft", "soft_pixel")
_WEIGHTINGS: tuple[str, ...] = ("one_minus_alpha", "sqrt_alpha_one_minus_alpha", "inverse_one_minus_alpha")


def default_original_options() -> argparse.Namespace:
    """The original's option namespace with its defaults."""
    return argparse.Namespace(**{k: (list(v) if isinstance(v, list) else v) for k, (v, _) in ORIGINAL_FLAGS.items()})


def apply_original_presets(opt: argparse.Namespace) -> argparse.Namespace:
    """The original's ``-O0 … -O4`` presets and knock-on rules, in its code order (the original's main.py, its argparse
    flags and -O preset block).

    Mutates and returns ``opt``. Kept line by line so that a combination means exactly what it meant there
    (including the elif chain: ``-O1 -O4`` does not enable SDXL; ``-O2`` forces ``--guidance controlnet``
    unless ``-O4``).
    """
    if opt.O0:
        opt.fp16, opt.grad_clip_rgb, opt.grad_suppress_type = True, 0.1, 0
    if opt.O1:
        opt.fp16 = opt.dir_text = opt.save_mesh = opt.canonicalize = opt.init_texture = True
    elif opt.O2:
        opt.fp16 = opt.dir_text = opt.save_mesh = opt.canonicalize = opt.fix_mesh = opt.no_normal = True
        opt.guidance = opt.guidance + "xl" if opt.O4 else "controlnet"
    elif opt.O3:
        opt.fp16 = opt.dir_text = opt.save_mesh = opt.zero123 = opt.bgt = opt.no_normal = True
        opt.radius_range = [1.0, 1.5]
        opt.n_targets = 0
        opt.smooth_iters = opt.iters
        opt.lambda_smooth = opt.lambda_smooth / 2
        opt.lr_fine = [1e-6, 1e-3]
    elif opt.O4:
        opt.fp16 = opt.dir_text = opt.save_mesh = opt.canonicalize = True
        opt.guidance += "xl"
    if opt.fix_mesh:
        opt.no_normal = True
    if "xl" in opt.guidance:
        opt.bg_scenery = True
        if (not opt.no_normal and not opt.only_normal) or opt.vsd:
            opt.bs, opt.iters = 1, 2400
        else:
            opt.bs, opt.iters = 2, 1200
        opt.res_fine, opt.optimizer, opt.scheduler, opt.smooth_iters = 1024, "adam", "dpm", 0
    if opt.ref_path:
        opt.focal_range = opt.focal_range_fine = [1.025, 1.025]
    if opt.no_normal:
        opt.lr_fine = [opt.lr_fine[0] / 20, opt.lr_fine[1]]
    if opt.latent:
        opt.albedo = True
        opt.res_fine = 256 if "xl" in opt.guidance else 128
    if opt.albedo:
        opt.albedo_iters = opt.iters
    return opt


def _max_epoch(iters: int, bs: int) -> int:
    # The original's loader has 800 indices ⇒ ceil(800/bs) steps per epoch (the original's nerf/utils.py, Trainer).
    return math.ceil(iters / math.ceil(800 / bs))


def _guidance_model(opt: argparse.Namespace) -> tuple[str, tuple[str, ...], tuple[float, ...], str | None]:
    """(family, ControlNet kinds, their scales, model hub id or None for the family default)."""
    g = opt.guidance.lower()
    family = "sdxl" if "xl" in g else "sd"
    controlnets = tuple(opt.control_type) if "controlnet" in g else ()
    scales = tuple(float(s) for s in opt.control_scale)
    if controlnets and len(scales) == 1 and len(controlnets) > 1:
        scales = scales * len(controlnets)  # the original's default [1.0] with several types
    model = None
    if family == "sdxl":
        if "turbo" in opt.sd_version:
            model = "stabilityai/sdxl-turbo"
        elif opt.sd_version in ("xl-0.9", "0.9"):
            model = "stabilityai/stable-diffusion-xl-base-0.9"
        # else: base-1.0 (the original fell back to 0.9 for its default '2.1', a bug fixed here)
    return family, controlnets, scales, model


def original_to_config(opt: argparse.Namespace) -> C.RunConfig:
    """Map the original's resolved option namespace onto a RunConfig (after :func:`apply_original_presets`)."""
    family, controlnets, scales, model = _guidance_model(opt)
    # Under --zero123 the original's --bgt drives Zero123 and the text term stays SDS (its trainer's
    # `bgt and not zero123`), scaled by 0.01 (its grad_scale_sd).
    text_bgt = opt.bgt and not opt.zero123
    loss = "vsd" if opt.vsd else "bgt" if text_bgt else "csd" if opt.csd else "ssd" if opt.ssd else "sds"
    shape = "fixed" if opt.fix_mesh else "dmtet"
    variant = _PGC_VARIANTS[opt.grad_suppress_type] if 0 <= opt.grad_suppress_type < 6 else "clip"
    pgc_tau = opt.grad_clip_rgb if opt.grad_clip_rgb >= 0 and 0 <= opt.grad_suppress_type < 6 else None
    weighting = _WEIGHTINGS[opt.weight_choice] if 0 <= opt.weight_choice < 3 else "uniform"
    # The fixed mesh renders unlit albedo in the original (its renderer's shading for -O2).
    shading = "albedo" if opt.albedo or shape == "fixed" else "random"
    return C.override(
        C.RunConfig(),
        **{
            "guidance.text": opt.text or "",
            "guidance.negative": opt.negative,
            "guidance.family": family,
            "guidance.model": model,
            "guidance.controlnets": controlnets,
            "guidance.control_scales": scales if controlnets else (),
            "guidance.loss": loss,
            "guidance.guidance_scale": float(opt.guidance_scale),
            "guidance.cfg_rescale": 0.5 if opt.cfg_rescale else 0.0,
            "guidance.weighting": weighting,
            "guidance.dreamtime": opt.dreamtime,
            "guidance.init_time": opt.init_time,
            "guidance.scheduler": opt.scheduler if opt.scheduler in ("ddpm", "ddim", "dpm") else "ddpm",
            "guidance.latent": opt.latent,
            "guidance.rgb_sds": not opt.only_normal,
            "guidance.normal_sds": not opt.no_normal,
            "guidance.dir_text": opt.dir_text,
            "guidance.angle_front": opt.angle_front,
            "guidance.angle_overhead": opt.angle_overhead,
            "guidance.front_azimuth": 180.0 if opt.left else 0.0,
            "guidance.ssd_m": opt.ssd_M,
            "guidance.suppress_face": opt.suppress_face,
            "guidance.pgc_tau": pgc_tau,
            "guidance.pgc_variant": variant,
            "guidance.latent_clamp": opt.grad_clip_latent if opt.grad_clip_latent >= 0 else None,
            "guidance.ref_path": opt.ref_path or None,
            "guidance.lambda_ref": opt.lambda_ref,
            "guidance.zero123": opt.zero123,
            "guidance.zero123_loss": "bgt" if opt.bgt else "sds",
            "guidance.zero123_guidance_scale": 100.0,  # its Zero123 steps' default (the trainer passed none)
            "guidance.grad_scale": 0.01 if opt.zero123 else 1.0,
            "guidance.clip_reference": 1.0 if "clip" in opt.guidance_o else 0.0,
            "guidance.lambda_saturation": opt.lambda_saturation,
            "render.resolution": opt.res_fine,
            "render.radius_range": tuple(opt.radius_range),
            "render.focal_range": tuple(opt.focal_range),
            "render.focal_range_fine": tuple(opt.focal_range_fine),
            "render.zoom_stages": not opt.single_stage and _max_epoch(opt.iters, opt.bs) > 3,
            "render.jitter_pose": opt.jitter_pose,
            "render.uniform_sphere_rate": opt.uniform_sphere_rate,
            # Latent mode renders over the zero latent (the original's fixed-mesh path ignored the scenery there).
            "render.background": "scenery" if opt.bg_scenery and not opt.latent else "color",
            "render.bg_color": opt.bg_color,
            "render.shading": shading,
            "render.albedo_iters": opt.albedo_iters,
            "mesh.path": opt.mesh_path,
            "mesh.canonicalize": opt.canonicalize,
            "mesh.shape": shape,
            "mesh.tet_res": opt.tet_res,
            "mesh.lambda_smooth": opt.lambda_smooth,
            "mesh.smooth_iters": opt.smooth_iters,
            "texture.material": "pbr" if opt.pbr else "albedo",
            "pbr.perturbed_normal": not opt.no_perturbed_nrm,
            "pbr.ks_min": tuple(float(x) for x in opt.ks_min),
            "pbr.ks_max": tuple(float(x) for x in opt.ks_max),
            "texture.init_from_vertex_colors": opt.init_texture and not opt.latent,  # the original skipped it
            "texture.pos_perturb": opt.pos_perturb,
            "optim.iters": opt.iters,
            "optim.batch_size": opt.bs,
            "optim.lr_geometry": opt.lr_fine[0],
            "optim.lr_texture": opt.lr_fine[1],
            "optim.optimizer": "adam" if opt.optimizer == "adam" else "adamw",
            "optim.precision": "auto" if opt.fp16 else "fp32",
            "optim.grad_clip": opt.grad_clip if opt.grad_clip >= 0 else None,
            "optim.seed": opt.seed,
            "output.workspace": opt.workspace,
            "output.save_mesh": True,  # the original exported only with --save_mesh (every -O preset sets it)
            "output.val_every": max(1, math.ceil(800 / opt.bs)) * max(1, opt.eval_interval),
            "output.ckpt_every": max(1, math.ceil(800 / opt.bs)),
            "runtime.gpus": opt.gpus,
        },
    )


def config_from_flags(*flags: str, **values: Any) -> C.RunConfig:
    """RunConfig for an original command line given as flags (``"O0", "O2"``) and option values
    (``guidance="controlnet"``).

    >>> config_from_flags("O0", "O2", "O4", guidance="controlnet").guidance.family
    'sdxl'
    """
    opt = default_original_options()
    for f in flags:
        setattr(opt, f, True)
    for k, v in values.items():
        setattr(opt, k, v)
    return original_to_config(apply_original_presets(opt))
