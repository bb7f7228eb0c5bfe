"""Help text of ``pgc-fast generate``: a short page (``--help``: common flags, presets, the original's -O options,
what is refused) and the full list (``--help-all``: every --section.field and every original flag), plain text."""

from __future__ import annotations

import argparse
import re
import textwrap

from pgc_fast import config as C

DESCRIPTION = """\
Texture a mesh from a text prompt, or refine its shape too (DMTet: -O1, or -O4 without -O2): score distillation
from a diffusion model with pixel-wise gradient clipping (PGC-3D). Accepts the original PGC-3D main.py commands as
written, for example

  pgc-fast generate -O0 -O2 -O4 --guidance controlnet --text "A panda ..." --workspace panda/sdxl \\
      --mesh_path data/panda_spear_shield.obj

Order: the original's flags with its defaults, -O presets and knock-on rules (or --preset NAME), then --model,
--device, --texture, --force, --resume, then --section.field flags; every override of a value you gave is printed
as a note. --dry-run validates and prints the resolved configuration without loading anything."""

# What each of the original's main.py flags means here; "(not supported yet)" marks the ones that are refused.
ORIGINAL_HELP: dict[str, str] = {
    "text": "prompt (guidance.text)",
    "negative": "negative prompt (guidance.negative)",
    "O0": "PGC with tau 0.1 (variant 0) and mixed precision",
    "O1": "DMTet shape + texture refinement (SD 2.1-base, normal + RGB SDS, init_texture, smoothing)",
    "O2": "fixed-mesh text-to-texture; forces --guidance controlnet unless -O4",
    "O3": "Zero123 image-to-3D from --ref_path (+ the text at 0.01); DMTet (no canonicalize: a mesh outside [-1, 1]^3"
    " needs --canonicalize), or --fix_mesh",
    "O4": "SDXL: appends 'xl' to --guidance; bs, iters, res_fine, scheduler follow the SDXL rule",
    "save_mesh": "export the textured mesh (pgc-fast always does)",
    "eval_interval": "validation image every N epochs of 800/bs steps (output.val_every)",
    "workspace": "run directory, under exp/ (output.workspace)",
    "guidance": "model family by substring: 'xl' = SDXL, 'controlnet' = ControlNet",
    "guidance_o": "'clip' adds the CLIP reference-image loss (guidance.clip_reference); other values do nothing",
    "guidance_scale": "classifier-free guidance scale (guidance.guidance_scale)",
    "control_type": "ControlNet conditions: depth, normal, tile, shuffle or kind=repo (guidance.controlnets)",
    "control_scale": "ControlNet conditioning scales, one per type (guidance.control_scales)",
    "sd_version": "SDXL variant: xl-1.0 (default here), xl-0.9, *turbo*; SD ignores it",
    "seed": "random seed (optim.seed), 0 to 2^32-1",
    "mesh_path": "input mesh: .obj, .ply, .glb, .gltf (mesh.path)",
    "canonicalize": "centre and scale the mesh for training; outputs keep the input's frame",
    "optimizer": "adam, or anything else for adamw (optim.optimizer)",
    "scheduler": "ddpm, ddim or dpm: BGT+ denoising and VSD (guidance.scheduler)",
    "fp16": "mixed precision (optim.precision=auto)",
    "no_normal": "no normal-map SDS (DMTet: RGB SDS alone refines shape and texture)",
    "only_normal": "only normal-map SDS: DMTet refines the shape alone",
    "zero123": "Zero123 image guidance from --ref_path (guidance.zero123, guidance.zero123_model)",
    "ref_path": "reference image: reference-view MSE and the shuffle ControlNet (guidance.ref_path)",
    "lambda_ref": "weight of the reference-view MSE (guidance.lambda_ref)",
    "dreamtime": "DreamTime timestep schedule",
    "init_time": "largest timestep fraction of DreamTime and BGT+",
    "pbr": "PBR material (kd, roughness, metallic, normal map) under an environment light (texture.material=pbr)",
    "no_perturbed_nrm": "PBR: no learned normal perturbation, no normal map (pbr.perturbed_normal)",
    "ks_min": "PBR: lower bounds of occlusion, roughness, metallic (pbr.ks_min)",
    "ks_max": "PBR: upper bounds of occlusion, roughness, metallic (pbr.ks_max; 0 pins a channel)",
    "fix_mesh": "keep the shape fixed (texture only)",
    "init_texture": "initialise the texture from the mesh's vertex colours",
    "pos_perturb": "jitter the texture's query positions",
    "latent": "Latent-NeRF: the texture holds 4 latent channels, decoded for viewing and export",
    "vsd": "VSD loss (SDXL only: with -O4)",
    "bgt": "BGT+ loss",
    "csd": "CSD loss",
    "ssd": "SSD loss",
    "cfg_rescale": "CFG rescale 0.5",
    "bg_color": "background grey level in [0, 1]",
    "bg_scenery": "scenery background in training (SDXL turns it on; render.bg_image)",
    "lambda_saturation": "weight of the saturation penalty (guidance.lambda_saturation)",
    "lambda_smooth": "DMTet smoothness weight",
    "iters": "optimisation steps (optim.iters)",
    "smooth_iters": "DMTet: smoothing in the last N steps",
    "lr_fine": "learning rates: geometry texture (optim.lr_geometry, optim.lr_texture)",
    "albedo": "unlit albedo shading",
    "albedo_iters": "albedo shading for the first N steps (render.albedo_iters; fixed mesh: always; PBR: unlit kd)",
    "uniform_sphere_rate": "probability of uniform view directions",
    "weight_choice": "SDS weighting 0..2, else uniform (guidance.weighting)",
    "grad_clip": "element-wise clip of parameter gradients, >= 0 enables (optim.grad_clip)",
    "grad_clip_rgb": "PGC threshold tau, >= 0 enables (guidance.pgc_tau)",
    "grad_clip_latent": "element-wise clamp of the latent SDS gradient (guidance.latent_clamp)",
    "grad_suppress_type": "PGC variant 0..5: clip, value, global, sigmoid, soft, soft_pixel",
    "gpus": "GPU ids such as 0,1: one process per GPU through torchrun (runtime.gpus)",
    "bs": "views per step and per GPU (optim.batch_size)",
    "jitter_pose": "jitter the cameras",
    "res_fine": "render resolution (render.resolution)",
    "tet_res": "DMTet grid resolution, 16 to 512 (mesh.tet_res)",
    "radius_range": "camera distance range",
    "focal_range": "focal length / H range, first zoom stage",
    "focal_range_fine": "focal length / H range, last zoom stage",
    "dir_text": "view-dependent prompts (front, side, back view)",
    "suppress_face": "append 'face' to the negative prompt away from the front",
    "single_stage": "no three-stage zoom-in",
    "n_targets": "GMM local-part cameras when > 0 (not supported yet)",
    "angle_overhead": "view prompts: polar angle of the overhead / bottom views (guidance.angle_overhead)",
    "angle_front": "view prompts: width of the front and back azimuth bins (guidance.angle_front)",
    "ssd_M": "SSD: timesteps <= M use the mode-disengaging term (guidance.ssd_m)",
    "left": "the reference faces the other way: front and back prompts swap (guidance.front_azimuth 180)",
    "test": "render a trained workspace, no training: 100-view videos, frames, poses.npy; re-export the mesh",
    "ckpt": "the checkpoint --test renders: latest, or a step*.safetensors file",
}

PRESET_HELP: dict[str, str] = {
    "default": "RunConfig defaults (SD 2.1-base, field texture, 2000 steps)",
    "texture-pgc": "-O0 -O2: SD 1.5 + depth ControlNet texturing with PGC",
    "texture": "-O2: SD 1.5 + depth ControlNet texturing, no PGC",
    "texture-sdxl-pgc": "-O0 -O2 -O4: SDXL texturing with PGC",
    "texture-sdxl-controlnet-pgc": "-O0 -O2 -O4 --guidance controlnet (README command A)",
    "texture-sdxl-vsd-pgc": "-O0 -O2 -O4 --vsd --guidance_scale 7.5 (README command C)",
    "texture-sdxl-controlnet-pbr-pgc": "-O0 -O2 -O4 --pbr --guidance controlnet (README command B)",
    "texture-fast": f"-O0 -O2 in {C.FAST_TIER_ITERS} steps with a 1024² bake: a quick preview of a prompt",
    "demo": "what pgc-fast demo runs: toy-sd on the CPU (64² renders, 600 steps)",
}

COMMON: list[tuple[str, str]] = [
    ("--text PROMPT", "what the texture should show"),
    ("--negative PROMPT", "what it should not"),
    ("--mesh_path FILE", "input mesh: .obj, .ply, .glb or .gltf"),
    ("--workspace DIR", "run directory, under exp/ (--output.root sets that)"),
    ("--preset NAME", "start from a named preset (below) instead of the -O flags"),
    ("--model NAME", "built-in (tiny-sd, tiny-sdxl, sd15-random, sdxl-random, toy-sd), alias (sdxl, sd15,"),
    ("", "sd21-base, ...), hub id org/name or a local diffusers directory"),
    ("--guidance NAME", "family by substring: 'xl' = SDXL, 'controlnet' = ControlNet"),
    ("--control_type T ...", "ControlNet conditions: depth, normal, tile, shuffle"),
    ("--ref_path IMAGE", "reference image (reference-view loss, shuffle ControlNet)"),
    ("--iters N, --bs N", "steps; views per step and per GPU"),
    ("--guidance_scale S", "classifier-free guidance scale"),
    ("--grad_clip_rgb TAU", "PGC threshold (-O0 sets 0.1)"),
    ("--res_fine PX", "render resolution"),
    ("--seed N", "random seed"),
    ("--texture {field,uv}", "hash-grid field (the original) or UV texture"),
    ("--pbr", "PBR material under an environment light; GLB with base colour, metallic-roughness,"),
    ("", "normal and occlusion maps (--pbr.tonemap none: linear radiance to the VAE, as the original)"),
    ("--env_path FILE", "PBR environment: a 2:1 lat-long .hdr or .exr (default: a generated sky)"),
    ("--learn_light", "PBR: optimise the environment light too"),
    ("--device {auto,cpu,cuda}", "compute device"),
    ("--gpus IDS", "GPU ids such as 0,1: one process per GPU"),
    ("--dry-run", "validate and print the resolved configuration; load nothing"),
    ("--force, --resume", "overwrite the workspace / continue its last checkpoint"),
    ("--test [--ckpt FILE]", "render a trained workspace (videos, frames, poses.npy), re-export; no training"),
    ("--config FILE", "start from a config.yaml written by an earlier run"),
    ("--debug", "show the traceback of an error"),
    ("--help-all", "every option: all --section.field flags and the original's flags"),
]


def plain(text: str) -> str:
    """reST markup out (``x`` → x, :func:`x` → x), whitespace collapsed: help is read in a terminal."""
    text = re.sub(r":\w+:`~?([^`]+)`", r"\1", text)
    return " ".join(text.replace("``", "").split())


def _table(rows: list[tuple[str, str]], width: int = 27) -> list[str]:
    return [f"  {a:<{width}} {b}" if len(a) <= width else f"  {a}\n  {'':<{width}} {b}" for a, b in rows]


def short_help() -> str:
    """The ~80-line page ``pgc-fast generate --help`` prints."""
    from pgc_fast.config.original_flags import NOT_REPRODUCED

    refused = NOT_REPRODUCED.items()

    lines = [
        "usage: pgc-fast generate [--preset NAME | -O0 ... -O4] --text PROMPT --mesh_path FILE [options]",
        "",
        DESCRIPTION,
        "",
        "common options:",
        *_table(COMMON),
        "",
        "presets (--preset NAME):",
        *_table([(k, PRESET_HELP.get(k, "")) for k in sorted(C.PRESETS)]),
        "",
        "the original's -O options (combine as in its README):",
        *_table([(f"-O{i}", ORIGINAL_HELP[f"O{i}"]) for i in range(5)], width=4),
        "",
        "refused (not supported yet): --n_targets > 0",
        "refused (not reproduced; the error and --help-all say why):",
        textwrap.fill(
            ", ".join(f"--{k}" + (f" other than {v}" if v not in (False, "") else "") for k, (_, v, _) in refused),
            width=116,
            initial_indent="  ",
            subsequent_indent="  ",
        ),
        "",
        "Every setting is also a flag --SECTION.FIELD VALUE (sections: " + ", ".join(C.SECTIONS) + ").",
        "pgc-fast generate --help-all lists them all, with every flag of the original.",
    ]
    return "\n".join(lines) + "\n"


class ShortHelp(argparse.Action):
    """-h / --help: the short page."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kw: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help="this short help and exit")

    def __call__(self, parser, namespace, values, option_string=None):
        print(short_help(), end="")
        parser.exit()


class FullHelp(argparse.Action):
    """--help-all: argparse's page of every option."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kw: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help="every option and exit")

    def __call__(self, parser, namespace, values, option_string=None):
        parser.print_help()
        parser.exit()


class PlainFormatter(argparse.RawDescriptionHelpFormatter):
    """One spelling per option (--[no-]x for booleans) and one line of metavar."""

    def _format_action_invocation(self, action: argparse.Action) -> str:
        if isinstance(action, argparse.BooleanOptionalAction):
            return "--[no-]" + action.option_strings[0][2:]
        if action.option_strings and action.nargs != 0:
            metavar = self._format_args(action, self._get_default_metavar_for_optional(action))
            return f"{action.option_strings[0]} {metavar}"
        return super()._format_action_invocation(action)
