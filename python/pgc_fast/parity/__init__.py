"""The original PGC-3D's SDS step written its way (parity.original_step), for benchmarks and parity checks.

May import: torch, pgc_kernels.reference. Nothing else of pgc_fast.
"""
