"""Type stubs for the compiled mesh core (rust_mesh/py)."""

def version() -> str:
    """Version of the compiled rust_mesh core."""
