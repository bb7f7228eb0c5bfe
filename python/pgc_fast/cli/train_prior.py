"""``pgc-fast train-prior``: train the built-in toy-sd prior from a seed (apps/toy_prior.py parses its own flags)."""

from __future__ import annotations

import argparse


def add_train_prior_parser(sub: argparse._SubParsersAction) -> None:
    sub.add_parser(
        "train-prior", help="train the built-in toy-sd prior from a seed (pgc-fast train-prior --help)", add_help=False
    )


def cmd_train_prior(argv: list[str]) -> int:
    from pgc_fast.apps.toy_prior import main

    return main(argv)
