"""Outputs of a run: the textured mesh (export.mesh: bake, OBJ/MTL, GLB), rendered views (export.views:
validation, turntable) and the HTML report (export.report).

May import: config, mesh, render. Never guidance or train.
"""
