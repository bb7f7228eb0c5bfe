"""The ``pgc-fast`` command line: one module per command (generate, demo, image, bench, train-prior), each
parse → config → call. Only this package reads argv; everything below takes typed arguments.
"""

from __future__ import annotations

import argparse
import sys

from pgc_fast.cli.bench import BENCH_SUITES, cmd_bench
from pgc_fast.cli.demo import add_demo_parser, cmd_demo
from pgc_fast.cli.generate import add_generate_parser, cmd_generate
from pgc_fast.cli.image import add_image_parser, cmd_image
from pgc_fast.cli.train_prior import add_train_prior_parser, cmd_train_prior


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pgc-fast", description="PGC-3D text-to-texture, fast.", allow_abbrev=False)
    sub = parser.add_subparsers(dest="command", required=True)
    add_generate_parser(sub)
    add_demo_parser(sub)
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
    add_image_parser(sub)
    add_train_prior_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["image"]:  # these two parse their own flags
        return cmd_image(argv[1:])
    if argv[:1] == ["train-prior"]:
        return cmd_train_prior(argv[1:])
    extra: list[str] = []
    if argv[:1] == ["bench"] and "--" in argv:  # everything after `--` belongs to the benchmark script
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
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
        return cmd_demo(args)
    return 2
