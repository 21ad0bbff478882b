"""The floor of the house: what the pipeline, the targets and calibration all stand on.

Errors, the mode/recipe/tokenizer enums, the graph types passed between stages, the quantization
summary, the manifest and its hashes, atomic file helpers and progress. Nothing here imports
anything above it (no torch, no runtime at import time).
"""
