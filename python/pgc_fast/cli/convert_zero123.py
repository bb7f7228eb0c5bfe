"""``pgc-fast convert-zero123``: the original's Zero123 ldm checkpoint (``zero123-xl.ckpt`` + its YAML) → a
diffusers-layout directory of safetensors (guidance/models/ldm_convert.py has the key mapping), which
``--guidance.zero123_model DIR`` then loads without converting again."""

from __future__ import annotations

import argparse
import sys

EPILOG = """\
The checkpoint is read as tensors only: .safetensors as is, a pickle (.ckpt) through torch.load(weights_only=True),
which refuses any pickle that would run code. If yours is refused, it holds more than tensors; in an environment you
trust (its source is known), save its tensors once and convert that file:

  python -c "import torch, safetensors.torch as s; sd = torch.load('zero123-xl.ckpt', map_location='cpu',
             weights_only=False)['state_dict']; s.save_file({k: v.contiguous() for k, v in sd.items()
             if k.startswith(('model.diffusion_model.', 'model_ema.', 'first_stage_model.', 'cc_projection.',
             'cond_stage_model.model.visual.'))}, 'zero123-xl.safetensors')"
  pgc-fast convert-zero123 zero123-xl.safetensors --out zero123-xl-diffusers
"""


def add_convert_zero123_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert-zero123",
        help="convert the original's Zero123 ldm checkpoint to a diffusers-layout directory",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoint", help="zero123-xl.ckpt (or a .safetensors copy of its tensors)")
    p.add_argument(
        "--config", default=None, help="its ldm YAML (default: Zero123's sd-objaverse-finetune-c_concat-256)"
    )
    p.add_argument("--out", required=True, help="output directory (unet/, vae/, image_encoder/, ...)")
    p.add_argument("--dtype", choices=("fp32", "fp16", "bf16"), default="fp32", help="weights dtype written")


def cmd_convert_zero123(args: argparse.Namespace) -> int:
    import torch

    from pgc_fast.guidance import GuidanceLoadError
    from pgc_fast.guidance.models.zero123 import load_ldm_checkpoint, save_diffusers

    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    try:
        bundle = load_ldm_checkpoint(args.checkpoint, args.config, device=torch.device("cpu"), dtype=dtype)
    except (GuidanceLoadError, FileNotFoundError) as e:
        print(f"pgc-fast convert-zero123: {e}", file=sys.stderr)
        return 2
    out = save_diffusers(bundle, args.out)
    print(f"wrote {out} (load it with --guidance.zero123_model {out})")
    return 0
