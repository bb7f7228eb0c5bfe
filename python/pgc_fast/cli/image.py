"""``pgc-fast image``: the guidance's 2-D mode (apps/image2d.py parses its own flags)."""

from __future__ import annotations

import argparse


def add_image_parser(sub: argparse._SubParsersAction) -> None:
    sub.add_parser("image", help="2D mode: optimise one image with SDS + PGC (pgc-fast image --help)", add_help=False)


def cmd_image(argv: list[str]) -> int:
    """GuidanceLoadError is printed there, in one line."""
    from pgc_fast.apps.image2d import main

    return main(argv)
