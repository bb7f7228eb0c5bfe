"""The ``pgc-fast`` command line: one module per command (generate, demo, image, bench, train-prior), each
parse → config → call. Only this package reads argv; everything below takes typed arguments.
"""

from __future__ import annotations

import argparse
import sys

from pgc_fast.cli.bench import BENCH_SUITES, cmd_bench
from pgc_fast.cli.generate import add_generate_parser, cmd_generate


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pgc-fast", description="PGC-3D text-to-texture, fast.", allow_abbrev=False)
    sub = parser.add_subparsers(dest="command", required=True)
    add_generate_parser(sub)
    d = sub.add_parser("demo", help="texture the built-in demo mesh with the built-in tiny model (CPU, < 3 min)")
    d.add_argument("--kernels", action="store_true", help="instead print what PGC does to a synthetic gradient")
    d.add_argument("--workspace", default="exp/demo", help="output directory")
    d.add_argument("--iters", type=int, default=None, help="override the demo's iteration count")
    d.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu")
    d.add_argument("--texture", choices=("field", "uv"), default=None)
    sub.add_parser("version", help="print versions")
    b = sub.add_parser("bench", help="run the kernel / step benchmarks on this machine (needs a source checkout)")
    b.add_argument(
        "suite",
        nargs="?",
        choices=sorted(BENCH_SUITES),
        default="kernels",
        help="kernels (GPU tables, or pytest-benchmark of the torch twins on a CPU), attention, vae, unet, "
        "guidance, hashgrid, step (the original's SDS step vs ours), all",
    )
    b.add_argument("--results", default=None, help="append the tables to this markdown file")
    b.epilog = "Arguments after `--` go to the benchmark script (e.g. pgc-fast bench step -- --views 2)."
    _add_image_parser(sub)
    sub.add_parser(
        "train-prior", help="train the built-in toy-sd prior from a seed (pgc-fast train-prior --help)", add_help=False
    )
    return parser


def _add_image_parser(sub: argparse._SubParsersAction) -> None:
    """``pgc-fast image``: the guidance module's 2D mode (pgc_fast.apps.image2d parses its own flags)."""
    sub.add_parser("image", help="2D mode: optimise one image with SDS + PGC (pgc-fast image --help)", add_help=False)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["image"]:  # 2D mode owns its flags (pgc_fast.apps.image2d); GuidanceLoadError printed there
        from pgc_fast.apps.image2d import main as image_main

        return image_main(argv[1:])
    extra: list[str] = []
    if argv[:1] == ["bench"] and "--" in argv:  # everything after `--` belongs to the benchmark script
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    if argv[:1] == ["train-prior"]:  # trains toy-sd (pgc_fast.apps.toy_prior parses its own flags)
        from pgc_fast.apps.toy_prior import main as train_prior_main

        return train_prior_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    args.extra = extra
    if args.command == "version":
        import pgc_fast
        import pgc_kernels
        from pgc_fast import _rust_mesh

        print(
            f"pgc-fast {pgc_fast.__version__}, pgc-kernels {pgc_kernels.__version__}, rust_mesh {_rust_mesh.version()}"
        )
        return 0
    if args.command == "generate":
        return cmd_generate(args, argv)
    if args.command == "bench":
        return cmd_bench(args)
    if args.command == "demo":
        from pgc_fast.apps import demo

        if args.kernels:
            return demo.kernel_demo()
        return demo.run_demo(workspace=args.workspace, iters=args.iters, device=args.device, texture=args.texture)
    return 2
