"""Score-distillation methods, one file each, headed by its paper and equation: sds, csd, ssd (gradient
functions of the UNet outputs), vsd (LoRA trained inside the step), bgt (multi-step DDIM target).

May import: torch, pgc_kernels, config.schema, guidance.schedule / prompts / conditions. Never render or train.
"""
