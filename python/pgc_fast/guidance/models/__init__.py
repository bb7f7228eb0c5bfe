"""The frozen diffusion models: loading from the hub / a local directory / the HF cache (models.loading), the
built-in tiny and random-weight models (models.builtin), the trained toy-sd prior (models.toy) and the exact
speed levers applied to them (models.accel).

May import: torch, diffusers/transformers (lazily), pgc_kernels, config.schema.
"""
