"""The ``pgc-fast`` command line. Subcommands are added as the pipeline grows."""
from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["image"]:  # 2D mode owns its flags (pgc_fast.image2d); GuidanceLoadError printed there
        from pgc_fast.image2d import main as image_main

        return image_main(argv[1:])
    parser = argparse.ArgumentParser(prog="pgc-fast", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="run the built-in demo (CPU-friendly)")
    sub.add_parser("version", help="print versions")
    sub.add_parser("image", help="2D mode: optimise one image with SDS + PGC (pgc-fast image --help)")
    args = parser.parse_args(argv)
    if args.command == "version":
        import pgc_kernels

        import pgc_fast
        from pgc_fast import _rust_mesh

        print(f"pgc-fast {pgc_fast.__version__}, pgc-kernels {pgc_kernels.__version__}, rust_mesh {_rust_mesh.version()}")
        return 0
    if args.command == "demo":
        from pgc_fast.demo import run_demo

        return run_demo()
    return 2


if __name__ == "__main__":
    sys.exit(main())
