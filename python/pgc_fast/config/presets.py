"""Named presets: the original's flag combinations (config.original_flags) under readable names, plus the demo's."""

from __future__ import annotations

from pgc_fast.config.schema import RunConfig, override

FAST_TIER_ITERS = 200
"""Iterations of the ``texture-fast`` preset: 200 × 4 views = 800 view evaluations, a tenth of ``texture-pgc``'s
2,000 × 4, with the same learning rates, t range (0.02–0.5) and zoom-in stages (which scale with the iteration count).
What sets it is the time budget of a prompt-iteration loop: ≤ 60 s for the whole run on one H100 (loading, the
first-step compile on a warm cache, the steps, the 1024² bake, the turntable, the report). The H100 cold run at 400
iterations (benches/RESULTS.md, issue 21, fast tier) spent 3.4 s starting, 12.7 s loading the models, 44 s in steps
(110 ms each) and 3.3 s exporting; with the caches warm, 60 s leaves room for about 200 steps beside load and compile,
so 200 it is. ``benches/gpu_recipe.py --recipe fast --runs 2`` measures the warm run (its second): 49.8 s on an
H100 from process start to the last output (12.4 s loading, 7.4 s compile from the cache, 20.6 s of steps at 102 ms,
2.7 s export, turntable and report); a fresh machine's first run takes 131.5 s (66 s of it the cold compile). The
texture's coarse colours settle early in an SDS run, so a tenth of the steps gives a preview of the prompt, not the
final asset (run ``texture-pgc`` or command A for that). Quality against the iteration count cannot be measured with
random weights; it is the open follow-up of the preset."""


def _build_presets() -> dict[str, RunConfig]:
    # Named presets are the original's flag combinations run through its exact preset + knock-on logic
    # (pgc_fast.config.original_flags), so a name means precisely what the README command meant.
    from pgc_fast.config.original_flags import config_from_flags

    demo = override(
        RunConfig(),
        **{
            # toy-sd (the project's own prior, guidance/models/toy.py) knows "a <colour> <pattern> object" and
            # renders of that at 64²; the settings below are what makes score distillation on the demo vase follow
            # such a prompt on the CPU in about a minute (benches/RESULTS.md, issue 20): lit grey-background
            # renders as in its training data, the whole t range (patterns form at large t), CFG 30 (the colour
            # saturates; 7.5 leaves a dark, speckled texture), a coarse 64² UV texture (texels the size of the
            # 64² render's pixels: no per-texel speckle) and 600 steps at lr 0.01.
            "guidance.text": "a blue striped object",
            "guidance.model": "toy-sd",
            "guidance.guidance_scale": 30.0,
            "guidance.cfg_convention": "diffusers",
            "guidance.pgc_tau": 0.1,
            "guidance.t_range": (0.02, 0.98),
            "mesh.canonicalize": True,
            "render.resolution": 64,
            "render.backend": "cpu",
            "render.shading": "lambertian",
            "render.bg_color": 0.5,
            "texture.kind": "uv",
            "texture.uv_resolution": 64,
            "texture.uv_levels": 3,
            "texture.export_resolution": 512,
            "texture.init_from_vertex_colors": True,
            "texture.init_iters": 100,
            # --texture field on the CPU: 2^14 hash rows per level (16 times the 64² render's pixels) instead of
            # 2^16; the torch twin's backward clears and adds whole levels, so this makes its steps ~2x faster.
            "texture.field_log2_table_size": 14,
            "optim.iters": 600,
            "optim.batch_size": 2,
            "optim.lr_texture": 1e-2,
            "output.workspace": "demo",
            "output.val_every": 150,
            "output.val_resolution": 256,
            "output.ckpt_every": 0,
            "output.turntable_frames": 36,
            "output.turntable_resolution": 256,
            "output.fps": 12,
            "runtime.device": "cpu",
            "runtime.gpus": "0",
        },
    )
    # Fast tier (issue 21), for iterating on prompts: -O0 -O2 (SD 1.5 + depth ControlNet at 512², PGC) with a fifth of
    # its iterations and light outputs. Why 200 iterations: see FAST_TIER_ITERS.
    fast = override(
        config_from_flags("O0", "O2"),
        **{
            "optim.iters": FAST_TIER_ITERS,
            "output.val_every": 0,
            "output.ckpt_every": 0,
            "output.turntable_frames": 60,
            "texture.export_resolution": 1024,
        },
    )
    return {
        "default": RunConfig(),
        # -O0 -O2: SD 1.5 + depth ControlNet texturing with PGC (the original forces --guidance controlnet).
        "texture-pgc": config_from_flags("O0", "O2"),
        # -O2 without PGC.
        "texture": config_from_flags("O2"),
        # -O0 -O2 -O4: SDXL texturing with PGC.
        "texture-sdxl-pgc": config_from_flags("O0", "O2", "O4"),
        # -O0 -O2 -O4 --guidance controlnet (README command A): SDXL + depth ControlNet texturing with PGC.
        "texture-sdxl-controlnet-pgc": config_from_flags("O0", "O2", "O4", guidance="controlnet"),
        # -O0 -O2 -O4 --vsd --guidance_scale 7.5 (README command C): SDXL VSD texturing with PGC.
        "texture-sdxl-vsd-pgc": config_from_flags("O0", "O2", "O4", vsd=True, guidance_scale=7.5),
        # -O0 -O2 -O4 --pbr --guidance controlnet (README command B): as A with the PBR material under the
        # environment light.
        "texture-sdxl-controlnet-pbr-pgc": config_from_flags("O0", "O2", "O4", pbr=True, guidance="controlnet"),
        # SD 1.5 + depth ControlNet at 512², PGC on, 200 iterations × 4 views, 1024² bake (the fast tier, issue 21).
        "texture-fast": fast,
        # CPU smoke configuration used by `pgc-fast demo` (mesh.path is filled in by the demo).
        "demo": demo,
    }


PRESETS: dict[str, RunConfig] = _build_presets()
