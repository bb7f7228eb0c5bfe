"""``pgc-fast demo``: texture the project's demo mesh with a built-in model (apps/demo.py), or ``--kernels``."""

from __future__ import annotations

import argparse


def add_demo_parser(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser(
        "demo", help="texture the built-in demo vase with toy-sd, the project's own prior (CPU, about 1 min)"
    )
    d.add_argument("--kernels", action="store_true", help="instead print what PGC does to a synthetic gradient")
    d.add_argument("--workspace", default="exp/demo", help="output directory")
    d.add_argument("--iters", type=int, default=None, help="override the demo's iteration count")
    d.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu")
    d.add_argument("--texture", choices=("field", "uv"), default=None)
    d.add_argument(
        "--text",
        default=None,
        help='prompt, "a <colour> <pattern> object" (toy-sd\'s words; default: "a blue striped object")',
    )


def cmd_demo(args: argparse.Namespace) -> int:
    from pgc_fast.apps import demo

    if args.kernels:
        return demo.kernel_demo()
    return demo.run_demo(
        workspace=args.workspace, iters=args.iters, device=args.device, texture=args.texture, text=args.text
    )
