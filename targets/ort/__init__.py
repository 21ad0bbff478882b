"""Everything of ONNX Runtime: its quantization recipes, transformer fusions, SmoothQuant, the
ORT-format conversion, the onnxruntime-extensions tokenizer, graph read-back and the runner.

The thin target classes (`targets/onnx.py`, `targets/ort_mobile.py`) choose from here.
"""
