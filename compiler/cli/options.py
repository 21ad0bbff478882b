"""The flags the commands share, as `Annotated` types: one spelling, one help text, one check.

Checks here run while the arguments are parsed, before a command imports torch, ONNX or a
runtime, so a bad value is refused at once with the UsageError (exit 2) the pipeline would raise
for it later. Old spellings stay as hidden options beside the new ones (`resolve_alias`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from bertc.compiler.core.enums import QuantizationMode, Recipe, TokenizerMode
from bertc.compiler.core.errors import UsageError
from bertc.compiler.options import (  # noqa: F401  (the defaults the flags show)
    DEFAULT_CALIBRATION_SAMPLES,
    DEFAULT_MAX_SEQUENCE_LENGTH,
    MAX_THREADS,
)

# bertc.compiler.loading's default, not imported from there: that module pulls in torch.

T = TypeVar("T")


def _flag(param: typer.CallbackParam) -> str:
    return max(param.opts, key=len)


def at_least_one(param: typer.CallbackParam, value: int | None) -> int | None:
    """Counts and sizes: threads, samples, steps, lengths."""
    if value is not None and value < 1:
        raise UsageError(f"{_flag(param)} must be at least 1, got {value}")
    return value


def thread_count(param: typer.CallbackParam, value: int | None) -> int | None:
    """A thread count: 1 to MAX_THREADS (None: the runtime's default)."""
    at_least_one(param, value)
    if value is not None and value > MAX_THREADS:
        raise UsageError(f"{_flag(param)} must be at most {MAX_THREADS}, got {value}")
    return value


def points(param: typer.CallbackParam, value: float) -> float:
    """A drop in metric points: finite and not negative."""
    if not math.isfinite(value) or value < 0:
        raise UsageError(f"{_flag(param)} must be a number of points >= 0 (e.g. 0.5), got {value}")
    return value


def positive(param: typer.CallbackParam, value: float) -> float:
    if not (value > 0 and math.isfinite(value)):
        raise UsageError(f"{_flag(param)} must be positive, got {value}")
    return value


def known_target(value: str | None) -> str | None:
    """The target registry imports ONNX (not torch, not a runtime): well under a second."""
    if value is not None:
        from bertc.targets import get_target

        get_target(value)  # a UsageError naming the known targets
    return value


def known_task(value: str | None) -> str | None:
    """The task table alone (`bertc.calibration.tasks`), not the readers: no pandas, no torch."""
    if value is not None:
        from bertc.calibration.tasks import get_task

        get_task(value)  # a UsageError naming the known tasks
    return value


def directory_to_create(param: typer.CallbackParam, value: Path | None) -> Path | None:
    """An --out that names a directory: `--out ""` arrives as `.`, which names none."""
    if value is not None and value.name in ("", ".", ".."):
        raise UsageError(
            f"{_flag(param)} must name a directory to create (not empty, '.' or '..'), "
            f"got {str(value)!r}"
        )
    return value


def resolve_alias(value: T, alias_value: T | None, default: T, flag: str, alias: str) -> T:
    """The value of a renamed flag, given under its new name or its old (hidden) one."""
    if alias_value is None:
        return value
    if value != default and value != alias_value:
        raise UsageError(f"{alias} is the old name of {flag}; give one of them")
    return alias_value


# ---- inputs and outputs ----
Checkpoint = Annotated[
    str, typer.Argument(help="Hub id in the local Hugging Face cache, or a checkpoint directory.")
]
ArtifactDir = Annotated[Path, typer.Argument(help="Artifact directory made by `bertc compile`.")]
ArtifactOut = Annotated[
    Path, typer.Option(help="Artifact directory to create.", callback=directory_to_create)
]
CheckpointOut = Annotated[
    Path, typer.Option(help="Checkpoint directory to create.", callback=directory_to_create)
]
Overwrite = Annotated[
    bool,
    typer.Option(
        help="Replace an existing --out (only once the new one is complete).", show_default=False
    ),
]
AsJson = Annotated[
    bool, typer.Option("--json", help="Print the result as JSON on stdout, and nothing else.")
]
AllowPickle = Annotated[
    bool, typer.Option(help="Load pickle (.bin) weights; they can run code.", show_default=False)
]

# ---- task and data ----
Task = Annotated[
    str,
    typer.Option(help="GLUE task (cola, sst2, mrpc, stsb, rte, ...).", callback=known_task),
]
CompileTask = Annotated[
    str | None,
    typer.Option(
        help="GLUE task to calibrate on (default: the config's finetuning_task).",
        callback=known_task,
    ),
]
VerifyTask = Annotated[
    str | None,
    typer.Option(
        help="GLUE task to score on (default: the task recorded in the artifact's manifest).",
        callback=known_task,
    ),
]
DataDir = Annotated[
    Path | None,
    typer.Option(
        help="glue_data folder (<dir>/SST-2/train.tsv, ...). Without it, nyu-mll/glue is read "
        "with the `datasets` package (not a bertc dependency: install it), from its cache or "
        "the Hugging Face Hub; where that fails, the command stops and asks for --data-dir."
    ),
]
MaxSequenceLength = Annotated[
    int | None,
    typer.Option(
        help=f"Truncation length of the tokenizer, in tokens, at most the checkpoint's "
        f"max_position_embeddings (default: {DEFAULT_MAX_SEQUENCE_LENGTH}, or that if smaller).",
        callback=at_least_one,
    ),
]
MaxSeqLengthAlias = Annotated[
    int | None, typer.Option("--max-seq-length", hidden=True, callback=at_least_one)
]
Seed = Annotated[int, typer.Option(help="Seed of every random draw the command makes.")]

# ---- compile ----
Target = Annotated[str, typer.Option(help="openvino, ort-mobile or onnx.", callback=known_target)]
# Each target's `default_quantization`, as --help states it (held equal by a test: the CLI
# does not import the targets to say it).
QUANTIZATION_DEFAULTS = {"openvino": "static", "ort-mobile": "dynamic", "onnx": "static"}
Quantization = Annotated[
    QuantizationMode | None,
    typer.Option(
        help="INT8 mode. Default: the target's own: "
        + ", ".join(f"{mode} for {target}" for target, mode in QUANTIZATION_DEFAULTS.items())
        + " (ort-mobile: the fastest accurate on ONNX Runtime's CPU provider, for one sentence "
        "a call; static gives standard QDQ for mobile execution providers and padded batches).",
        show_default=False,
    ),
]
QuantizationRecipe = Annotated[
    Recipe, typer.Option(help="bert-safe, or the quantizer's bare defaults to compare with.")
]
CalibrationSamples = Annotated[
    int,
    typer.Option(help="Train sentences used to calibrate static INT8.", callback=at_least_one),
]
Tokenizer = Annotated[
    TokenizerMode | None,
    typer.Option(
        help="fused: strings in, logits out; separate: a tokenizer model beside the ids-in "
        "model; none: token ids in. Default: fused where the target's tokenizer converts and "
        "its ids equal HF's on the task's sentences and a hard set; otherwise token ids in, "
        "with a note saying why.",
        show_default=False,
    ),
]


def budget_points(param: typer.CallbackParam, value: str) -> float | None:
    """`--max-drop` of compile: points >= 0, or "none" (no accuracy-budget search)."""
    if value.strip().lower() == "none":
        return None
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or number < 0 or "_" in value:
        raise UsageError(
            f"{_flag(param)} must be a number of points >= 0 (e.g. 0.5) or none, got {value!r}"
        )
    return abs(number)  # -0 is 0


def fraction(param: typer.CallbackParam, value: float | None) -> float | None:
    """A share in [0, 1]."""
    if value is not None and not (math.isfinite(value) and 0 <= value <= 1):
        raise UsageError(
            f"{_flag(param)} must be a fraction between 0 and 1 (e.g. 0.995), got {value}"
        )
    return value


BudgetMaxDrop = Annotated[
    str,
    typer.Option(
        "--max-drop",
        help="Accuracy budget: points the task's headline metric may drop, on a held-out train "
        "slice in the search and on dev with --verify; none: the recipe as it is, no search.",
        callback=budget_points,
    ),
]
MinAgreement = Annotated[
    float | None,
    typer.Option(
        help="Accuracy budget: least share of the slice with fp32's class (regression: Pearson "
        "with fp32). Default 0.995 (regression 0.999).",
        callback=fraction,
        show_default=False,
    ),
]
KeepBest = Annotated[
    bool,
    typer.Option(
        "--keep-best",
        help="When no candidate meets the budget, write the best one anyway (marked).",
    ),
]

MaxDrop = Annotated[
    float,
    typer.Option(
        help="Fail (exit 12) if the headline metric drops by more points.", callback=points
    ),
]

# ---- runtimes ----
RuntimeThreads = Annotated[
    int | None,
    typer.Option(
        help="Threads of the artifact's runtime only (default: the runtime's own).",
        callback=thread_count,
    ),
]
ReferenceThreads = Annotated[
    int | None,
    typer.Option(
        help="torch threads of the fp32 reference (default: verify's own).",
        callback=thread_count,
    ),
]
BatchSize = Annotated[int, typer.Option(help="Training batch size.", callback=at_least_one)]

# ---- training ----
LearningRate = Annotated[float, typer.Option(help="AdamW peak learning rate.", callback=positive)]
Epochs = Annotated[int, typer.Option(help="Epochs (unless --max-steps).", callback=at_least_one)]
MaxSteps = Annotated[
    int | None,
    typer.Option(help="Optimizer steps; overrides --epochs (a CPU budget).", callback=at_least_one),
]
TrainSamples = Annotated[
    int | None, typer.Option(help="Seeded train sample size.", callback=at_least_one)
]
TorchThreads = Annotated[int | None, typer.Option(help="torch CPU threads.", callback=thread_count)]
KeepLayers = Annotated[
    int | None,
    typer.Option(
        help="Keep N of the checkpoint's encoder layers (uniform, e.g. 6 -> 3).",
        callback=at_least_one,
    ),
]
StudentLayersAlias = Annotated[
    int | None, typer.Option("--student-layers", hidden=True, callback=at_least_one)
]
Resume = Annotated[
    bool,
    typer.Option(
        help="Continue from the last epoch checkpoint in OUT.checkpoints/.", show_default=False
    ),
]
KeepCheckpoints = Annotated[
    bool, typer.Option(help="Keep OUT.checkpoints/ after a successful run.", show_default=False)
]
