"""Everything of OpenVINO: the NNCF recipes, graph read-back, the openvino-tokenizers tokenizer,
static-shape policy and the runner. The thin target class is `targets/openvino.py`.
"""
