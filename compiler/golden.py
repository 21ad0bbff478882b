"""Golden outputs, recorded in every artifact at compile time (`golden.json`).

A small seeded set of the task's dev inputs (or, without task data, a fixed list of built-in
sentences), the artifact's compared output for each on the build machine, and the fp32 PyTorch
reference's. The artifact's outputs are computed by the runtime-only loader exactly as
`bertc.targets.loader.check` recomputes them on a device, so an app can prove there that its
runtime build on its CPU gives what bertc verified. The file is listed in the manifest with its
sha256, like every other file, and the manifest's `golden` section names it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from bertc.calibration import Example, GlueTask, load_examples, sample_examples, single_sentences
from bertc.compiler.core.errors import DataError, TargetBuildError
from bertc.compiler.core.hashing import sha256_file
from bertc.compiler.loading import LoadedModel
from bertc.compiler.tokenization import builtin_set
from bertc.compiler.verify.reference import run_reference
from bertc.targets import loader

GOLDEN_FILE = "golden.json"
GOLDEN_EXAMPLES = 16
GOLDEN_SEED = 0
GOLDEN_SPLIT = "dev"
BUILTIN_SOURCE = "built-in sentences"


@dataclass(frozen=True)
class GoldenInputs:
    """The examples a golden set is recorded on, and where they come from."""

    examples: tuple[Example, ...]
    source: str
    task: str | None
    split: str | None
    seed: int | None


def golden_inputs(
    task: GlueTask | None, data_dir: Path | None, encoder: bool, pair: bool
) -> GoldenInputs:
    """GOLDEN_EXAMPLES examples of a seeded shuffle (GOLDEN_SEED) of the task's dev split, each
    sentence alone for a sentence encoder; without task data, the built-in sentences (pairs for
    a pair classifier). Examples with an empty text are passed over."""
    dev: list[Example] = []
    if task is not None:
        try:
            dev = load_examples(task, GOLDEN_SPLIT, data_dir)
        except DataError:
            dev = []
    if encoder:
        dev = single_sentences(dev)
    dev = [e for e in dev if e.text_a.strip() and (e.text_b is None or e.text_b.strip())]
    if dev and task is not None:
        chosen = sample_examples(dev, GOLDEN_EXAMPLES, seed=GOLDEN_SEED)
        source = (
            f"{task.name} {GOLDEN_SPLIT} split: {len(chosen)} examples of a seeded shuffle "
            f"(seed {GOLDEN_SEED})"
        )
        return GoldenInputs(tuple(chosen), source, task.name, GOLDEN_SPLIT, GOLDEN_SEED)
    builtin = tuple(
        Example(text, pair_text, None, number)
        for number, (text, pair_text) in enumerate(builtin_set(pair and not encoder), start=1)
    )
    return GoldenInputs(builtin, BUILTIN_SOURCE, None, None, None)


def record_golden(
    artifact: Path,
    manifest: dict[str, Any],
    loaded: LoadedModel,
    inputs: GoldenInputs,
    token_ids: Sequence[Mapping[str, np.ndarray]],
) -> dict[str, Any]:
    """Write `artifact/golden.json` and add it to `manifest` (its files entry and the `golden`
    section); the caller reseals and rewrites the manifest. `artifact` must already hold a
    written manifest (the loader runs it as an app would). `token_ids`: each example's ids as
    the build tokenized them ([1, length] per input name), fed to the reference and, for an
    artifact that takes ids, to the artifact. TargetBuildError when the built artifact gives a
    non-finite output on a golden input."""
    reference = run_reference(loaded, token_ids)
    model = loader.load(artifact)
    text_in = (manifest.get("tokenizer") or {}).get("mode") in loader.TEXT_MODES
    examples = [
        loader.GoldenExample(
            example.text_a,
            example.text_b,
            (),
            (),
            None
            if text_in
            else {name: tuple(int(v) for v in ids[0]) for name, ids in single.items()},
        )
        for example, single in zip(inputs.examples, token_ids, strict=True)
    ]
    outputs = loader.golden_outputs(model, examples)
    batched = loader.golden_outputs(model, examples, batch=True)
    bad = [
        number
        for number, (row, batch_row) in enumerate(zip(outputs, batched, strict=True), start=1)
        if not (np.isfinite(row).all() and np.isfinite(batch_row).all())
    ]
    if bad:
        raise TargetBuildError(
            f"the built artifact gives non-finite outputs on golden example {bad[0]} "
            f"({inputs.source})"
        )
    golden = loader.Golden(
        source=inputs.source,
        task=inputs.task,
        split=inputs.split,
        seed=inputs.seed,
        inputs="text" if text_in else "token ids",
        output=loader.compared_output(manifest),
        tolerance=loader.GOLDEN_TOLERANCE,
        build=loader.platform_description(manifest),
        examples=tuple(
            dataclasses.replace(
                example,
                output=loader.float32_values(output),
                batch_output=loader.float32_values(batch_output),
                reference=loader.float32_values(expected),
            )
            for example, output, batch_output, expected in zip(
                examples, outputs, batched, reference, strict=True
            )
        ),
    )
    del model  # the runtime lets go of the model files before the staging folder moves
    path = artifact / GOLDEN_FILE
    path.write_text(golden.to_text(), encoding="utf-8")
    manifest["files"] = dict(
        sorted(
            {
                **manifest["files"],
                GOLDEN_FILE: {"bytes": path.stat().st_size, "sha256": sha256_file(path)},
            }.items()
        )
    )
    manifest["golden"] = {
        "file": GOLDEN_FILE,
        "examples": len(golden.examples),
        "source": golden.source,
        "task": golden.task,
        "split": golden.split,
        "seed": golden.seed,
        "inputs": golden.inputs,
        "output": golden.output,
        "tolerance": golden.tolerance,
        "check": "bertc run ARTIFACT --check, or bertc.targets.loader.check(ARTIFACT) on the "
        "device (runtime only)",
    }
    return manifest["golden"]
