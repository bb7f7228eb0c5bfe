"""The run configuration: one typed, frozen RunConfig (config.schema), its validation (config.validate), named
presets (config.presets) and the original PGC-3D's -O0…-O4 flags (config.original_flags).

May import: nothing else from pgc_fast. Everything else may import this package.
"""

from __future__ import annotations

from pgc_fast.config.presets import FAST_TIER_ITERS, PRESETS
from pgc_fast.config.schema import (
    BUILTIN_MODELS,
    CONTROL_TYPES,
    DEFAULT_MODELS,
    IMAGE_FORMATS,
    SECTIONS,
    UNSUPPORTED_MESSAGE,
    ConfigError,
    GuidanceConfig,
    MeshConfig,
    OptimConfig,
    OutputConfig,
    PbrConfig,
    RenderConfig,
    RunConfig,
    RuntimeConfig,
    TextureConfig,
    field_docs,
    from_dict,
    override,
    resolved_model,
    to_dict,
)
from pgc_fast.config.validate import unsupported_features, validate

__all__ = [
    "BUILTIN_MODELS",
    "CONTROL_TYPES",
    "DEFAULT_MODELS",
    "FAST_TIER_ITERS",
    "IMAGE_FORMATS",
    "PRESETS",
    "SECTIONS",
    "UNSUPPORTED_MESSAGE",
    "ConfigError",
    "GuidanceConfig",
    "MeshConfig",
    "OptimConfig",
    "OutputConfig",
    "PbrConfig",
    "RenderConfig",
    "RunConfig",
    "RuntimeConfig",
    "TextureConfig",
    "field_docs",
    "from_dict",
    "override",
    "resolved_model",
    "to_dict",
    "unsupported_features",
    "validate",
]
