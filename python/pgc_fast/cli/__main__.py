"""``python -m pgc_fast.cli``: the same entry point as the ``pgc-fast`` script (torchrun relaunches use it)."""

from __future__ import annotations

import sys

from pgc_fast.cli import main

sys.exit(main())
