import re

from pgc_fast import _rust_mesh


def test_version_matches_package():
    import pgc_fast

    assert re.fullmatch(r"\d+\.\d+\.\d+", _rust_mesh.version())
    assert _rust_mesh.version() == pgc_fast.__version__
