"""In-graph token ids vs the HF tokenizer's on GLUE dev sets, for both runtimes' converters.

    python bench/tokenizer_parity.py ../shared/assets/models/minilm-l6-sst2 \
        [--data-dir ../shared/assets/glue] [--tasks sst2 mrpc rte qnli stsb] [--list 3]

The same check `bertc compile` gates on (each task's dev split plus the hard set, pairs for pair
tasks), run without compiling a model: one Markdown row per task and converter.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bertc.calibration import get_task, load_examples
from bertc.compiler.core.errors import DataError
from bertc.compiler.tokenization import check_tokenizer_parity, describe_mismatch, hard_set
from bertc.targets.ort.tokenizer import OrtTokenizer, extensions_version, preprocessing_model
from bertc.targets.ov.tokenizer import (
    OpenVinoTokenizer,
    convert_hf_tokenizer,
    openvino_tokenizers_version,
)
from transformers import AutoTokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/assets/glue"))
    parser.add_argument("--tasks", nargs="+", default=["sst2", "mrpc", "rte", "qnli", "stsb"])
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--list", type=int, default=3, help="mismatches to print per row")
    args = parser.parse_args()
    hf = AutoTokenizer.from_pretrained(str(args.model))
    converters = {
        f"openvino-tokenizers {openvino_tokenizers_version()}": lambda pair: OpenVinoTokenizer(
            convert_hf_tokenizer(hf, args.max_length, pair)
        ),
        f"onnxruntime-extensions {extensions_version()}": lambda pair: OrtTokenizer(
            preprocessing_model(hf, args.max_length)
        ),
    }
    rows, details = [], []
    for name in args.tasks:
        task = get_task(name)
        pair = len(task.text_columns) == 2
        try:
            dev = load_examples(task, "dev", args.data_dir)
        except DataError as error:
            print(f"{name}: skipped ({error})")
            continue
        sets = {f"{task.name}-dev": [(e.text_a, e.text_b) for e in dev], "hard": hard_set(pair)}
        for converter, build in converters.items():
            parity = check_tokenizer_parity(hf, build(pair), sets, args.max_length)
            rows.append(
                f"| {task.name} | {converter} | {len(dev)} + {len(sets['hard'])} | "
                f"{parity.mismatched} | {parity.checked - parity.mismatched}/{parity.checked} |"
            )
            details += [
                f"{task.name}, {converter}: {describe_mismatch(m)}"
                for m in parity.mismatches[: args.list]
            ]
    print("| task | converter | dev + hard sentences | mismatched | equal to HF |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))
    print("\n" + "\n".join(details))


if __name__ == "__main__":
    main()
