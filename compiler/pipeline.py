"""`compile_model`: checkpoint → ONNX (parity-gated) → INT8 → artifact directory, atomically.

Each stage is a function from one plain value to the next (see STYLE.md); this module only
strings them together, builds the manifest and moves the finished directory into place.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from bertc.calibration import (
    Example,
    GlueTask,
    load_examples,
    resolve_task,
    sample_examples,
    single_sentences,
)
from bertc.compiler.core.enums import TokenizerMode
from bertc.compiler.core.errors import (
    DataError,
    TokenizerConversionError,
    TokenizerMismatchError,
    UsageError,
)
from bertc.compiler.core.files import check_output, make_staging_dir, move_into_place, writing
from bertc.compiler.core.hashing import sha256_file
from bertc.compiler.core.manifest import (
    SCHEMA_VERSION,
    describe_files,
    host_description,
    manifest_digest,
    to_jsonable,
    toolchain_versions,
    write_manifest,
)
from bertc.compiler.core.manifest_schema import MANIFEST_DIGEST_FIELD
from bertc.compiler.core.progress import Progress, silent
from bertc.compiler.core.recipes import Calibration
from bertc.compiler.core.sparsity import zlib_compressed_bytes
from bertc.compiler.export import check_parity, export_onnx
from bertc.compiler.families import check_supported
from bertc.compiler.golden import golden_inputs, record_golden
from bertc.compiler.heads import head_section
from bertc.compiler.loading import (
    HEAD_ENCODER,
    HEAD_REGRESSION,
    LoadedModel,
    check_segments_fit,
    head_kind,
    load_model,
    model_inputs,
    read_config,
    resolve_source,
    tokenizer_input_names,
)
from bertc.compiler.options import (  # noqa: F401  (re-exported: the pipeline's API)
    DEFAULT_CALIBRATION_SAMPLES,
    CompileOptions,
    CompileResult,
    sequence_length,
)
from bertc.compiler.search import SlicePlan, plan_slice, search_request
from bertc.compiler.tokenization import (
    TextPair,
    TokenizerParity,
    added_token_set,
    builtin_set,
    check_tokenizer_parity,
    describe_mismatch,
    hard_set,
)
from bertc.targets import BuildRequest, Target, TokenizerRequest, get_target

CALIBRATION_SEED = 0
TOKENIZER_DIR = "tokenizer"


Gate = Callable[[Path, Mapping[str, Any]], None]


def compile_task(source: str, options: CompileOptions) -> GlueTask | None:
    """The GLUE task a compile of `source` is for, from `--task` or the checkpoint's config,
    read before any weight is loaded (see `calibration.resolve_task`)."""
    config = read_config(resolve_source(source))
    return resolve_task(options.task, config.get("finetuning_task"))


def check_task_fits_head(task: GlueTask | None, config: Mapping[str, Any], source: str) -> None:
    """Refuse a task whose outputs the checkpoint's head cannot give (UsageError, exit 2): a
    2-label classifier compiled for STS-B would be calibrated, tokenized and recorded as a pair
    regression model. A bare encoder takes any task's sentences for calibration."""
    head = head_kind(dict(config))
    if task is None or head == HEAD_ENCODER:
        return
    width = (
        1
        if head == HEAD_REGRESSION
        else len(config.get("id2label") or {}) or int(config.get("num_labels", 2))
    )
    if width != task.num_labels:
        needs = "a regression score" if task.is_regression else f"{task.num_labels} labels"
        raise UsageError(
            f"{source} has a {head} head with {width} output(s) but {task.name} needs {needs}: "
            "compile it with the task it was fine-tuned for"
        )


def compile_model(
    source: str,
    out_dir: Path,
    options: CompileOptions,
    progress: Progress = silent,
    gate: Gate | None = None,
) -> CompileResult:
    """Build the artifact in a temporary sibling of `out_dir`, then rename it into place.

    `gate(staged_dir, manifest)`, when given, runs on the finished artifact before it replaces
    anything (e.g. `compile --verify`); an exception from it aborts the compile with `out_dir`
    untouched. With `options.sign_key` the staged artifact is then signed (`model.sig`).
    Raises the BertcError subclasses of each stage; nothing is left behind on error.
    """
    out_dir = Path(out_dir)
    target = get_target(options.target)
    options = options.with_quantization_default(target.default_quantization)
    if options.sign_key is not None:  # a key that cannot sign fails now, not after the build
        from bertc.compiler.signing import check_signing_key

        check_signing_key(options.sign_key)
    check_output(out_dir, options.overwrite, sources=[source])
    # The task and the calibration sentences are settled from the config alone, before any
    # weight is read: a compile that cannot work says so at once.
    config = read_config(resolve_source(source))
    check_supported(config)
    task = resolve_task(options.task, config.get("finetuning_task"))
    check_task_fits_head(task, config, source)
    # An explicit --max-sequence-length past the position table: exit 2 before any weight.
    sequence_length(options.max_sequence_length, config.get("max_position_embeddings"))
    calibration = calibration_examples(task, options, target)
    if head_kind(config) == HEAD_ENCODER:
        calibration = single_sentences(calibration)[: options.calibration_samples]
    budget_slice = plan_slice(task, options, head_kind(config), CALIBRATION_SEED)
    progress("load")
    loaded = load_model(
        source,
        allow_pickle=options.allow_pickle,
        max_sequence_length=options.max_sequence_length,
    )
    check_segments_fit(loaded.tokenizer, loaded.config, takes_pairs(loaded, task))
    staging = make_staging_dir(out_dir)
    artifact = staging / "artifact"
    try:
        with writing(staging):
            manifest = build_artifact(
                loaded, options, task, calibration, target, staging, progress, budget_slice
            )
        if gate is not None:
            progress("gate")
            gate(artifact, manifest)
        if options.sign_key is not None:
            from bertc.compiler.signing import sign_artifact

            progress("sign")
            sign_artifact(artifact, options.sign_key)
        move_into_place(artifact, out_dir, options.overwrite)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return CompileResult(out_dir, manifest)


def build_artifact(
    loaded: LoadedModel,
    options: CompileOptions,
    task: GlueTask | None,
    calibration: Sequence[Example],
    target: Target,
    staging: Path,
    progress: Progress = silent,
    budget_slice: SlicePlan | None = None,
) -> dict[str, Any]:
    """Export, check, quantize and package `loaded` into `staging/artifact` (its work files in
    `staging/work`); returns the manifest written there. With a `budget_slice` holding examples
    the target searches for the fastest INT8 candidate within the budget (BudgetNotMetError,
    exit 12, when none meets it and --keep-best is off)."""
    artifact = staging / "artifact"
    work = staging / "work"
    artifact.mkdir()
    work.mkdir()
    progress("export")
    graph = export_onnx(loaded, work / "model.fp32.onnx")
    progress("parity")
    graph = check_parity(loaded, graph, options.parity_tolerance)
    progress("tokenizer")
    tokenizer, tokenizer_section, tokenizer_note = choose_tokenizer(target, loaded, task, options)
    search, no_search = None, budget_slice.reason if budget_slice is not None else None
    if budget_slice is not None and budget_slice.examples and task is not None:
        progress("budget")
        search, no_search = search_request(
            loaded, task, budget_slice.examples, options, calibration_inputs, progress
        )
    progress("quantize")
    inputs = calibration_inputs(loaded, calibration)
    request = BuildRequest(
        options.quantization,
        inputs,
        work,
        options.recipe,
        tokenizer,
        max_sequence_length=loaded.max_sequence_length,
        num_attention_heads=int(loaded.config.get("num_attention_heads", 0)),
        hidden_size=int(loaded.config.get("hidden_size", 0)),
        search=search,
    )
    build = target.build(graph, request, artifact)
    progress("package")
    save_tokenizer(loaded, artifact / TOKENIZER_DIR)
    manifest = build_manifest(
        loaded, options, task, calibration, graph, build, artifact, target.reproducibility
    )
    manifest["tokenizer"] = (
        {**build.tokenizer, **tokenizer_section} if build.tokenizer else tokenizer_section
    )
    if tokenizer_note:
        manifest["notes"].append(tokenizer_note)
    manifest["search"] = dict(build.search) if build.search is not None else None
    if build.search is not None and not build.search.get("met", True):
        manifest["notes"].append(
            f"accuracy budget NOT met: no candidate met it on the held-out slice; "
            f"{build.search.get('chosen')} (the most accurate) was kept by --keep-best"
        )
    if no_search:
        manifest["notes"].append(no_search)
    elif search is not None and build.search is None:
        manifest["notes"].append(
            f"no accuracy-budget search: {options.target} --quantization "
            f"{options.quantization.value} --recipe {options.recipe.value} has none (the "
            "searched recipes: bert-safe static and dynamic on ONNX Runtime, static on "
            "OpenVINO); the budget was not checked"
        )
    manifest["quantization_choice"] = options.quantization_choice(target.default_quantization)
    # The result keeps the build's objects (e.g. the quantization summary); the file and the
    # digest hold their JSON form.
    manifest[MANIFEST_DIGEST_FIELD] = manifest_digest(manifest)
    write_manifest(artifact, manifest)
    # The loader runs the written artifact as an app would; its golden file joins the manifest.
    progress("golden")
    golden = golden_inputs(
        task, options.data_dir, loaded.head == HEAD_ENCODER, takes_pairs(loaded, task)
    )
    record_golden(artifact, manifest, loaded, golden, calibration_inputs(loaded, golden.examples))
    manifest[MANIFEST_DIGEST_FIELD] = manifest_digest(manifest)
    write_manifest(artifact, manifest)
    return manifest


def choose_tokenizer(
    target, loaded: LoadedModel, task: GlueTask | None, options: CompileOptions
) -> tuple[TokenizerRequest | None, dict[str, Any], str | None]:
    """Convert the tokenizer for the target and gate it on parity, before anything is quantized.

    Returns the request for the build (None: token ids in), the manifest's tokenizer section and
    a note. Asked for explicitly (--tokenizer fused/separate), a converter failure or a parity
    mismatch fails the build (exit 15 / 14; --allow-tokenizer-mismatch lets a mismatch through).
    By default the artifact gets a fused tokenizer when it converts and passes, and otherwise
    takes token ids, with a note that says why (never a tokenizer that silently differs).
    """
    ids_in: dict[str, Any] = {
        "mode": TokenizerMode.NONE.value,
        "inputs": "token ids",
        "pair": takes_pairs(loaded, task),
        "text_in": "bertc.targets.loader tokenizes with tokenizer/tokenizer.json (tokenizers)",
    }
    mode = TokenizerMode.FUSED if options.tokenizer is None else options.tokenizer
    if mode is TokenizerMode.NONE:
        return None, ids_in, None
    explicit = options.tokenizer is not None
    request = TokenizerRequest(
        mode, loaded.tokenizer, loaded.max_sequence_length, takes_pairs(loaded, task)
    )
    try:
        in_graph = target.tokenizer_graph(request)
    except TokenizerConversionError as error:
        if explicit:
            raise
        return None, {**ids_in, "fused_refused": str(error)}, f"token ids in: {error}"
    parity = tokenizer_parity(loaded, in_graph, task, options)
    section = {
        "max_length": loaded.max_sequence_length,
        "pair": request.pair,
        "hf_tokenizer": type(loaded.tokenizer).__name__,
        "parity": parity_section(parity, options.allow_tokenizer_mismatch),
    }
    waivable = options.allow_tokenizer_mismatch and not parity.over_length
    if parity.passed or waivable:
        return request, section, None
    message = (
        f"the {target.name} in-graph tokenizer differs from the HF tokenizer on "
        f"{parity.mismatched} of {parity.checked} sentences (first: "
        f"{describe_mismatch(parity.mismatches[0])})"
    )
    if explicit and parity.over_length:
        raise TokenizerMismatchError(
            f"{message}; {parity.over_length} ran past the maximum length "
            f"{loaded.max_sequence_length}, which no flag waives: use --tokenizer none"
        )
    if explicit:
        raise TokenizerMismatchError(
            f"{message}; pass --allow-tokenizer-mismatch to build anyway, or --tokenizer none"
        )
    remedy = (
        f"{parity.over_length} ran past the maximum length"
        if parity.over_length
        else "--tokenizer fused --allow-tokenizer-mismatch fuses it anyway"
    )
    note = f"token ids in: {message}; {remedy}"
    return None, {**ids_in, "fused_refused": section}, note


def is_pair_task(task: GlueTask | None) -> bool:
    """Pair tasks (MRPC, RTE, QNLI, MNLI, QQP, STS-B, WNLI) feed the tokenizer two texts."""
    return task is not None and len(task.text_columns) == 2


def takes_pairs(loaded: LoadedModel, task: GlueTask | None) -> bool:
    """A classifier of a pair task takes two texts; a sentence encoder embeds one text at a time,
    whatever task's sentences it is calibrated (or verified) on."""
    return loaded.head != HEAD_ENCODER and is_pair_task(task)


def tokenizer_parity(
    loaded: LoadedModel, in_graph, task: GlueTask | None, options: CompileOptions
) -> TokenizerParity:
    """In-graph ids vs HF ids on the task's dev sentences (or the built-in set) and the hard set."""
    pair = takes_pairs(loaded, task)
    sets: dict[str, list[TextPair]] = {}
    if task is not None:
        try:
            dev = load_examples(task, "dev", options.data_dir)
            if loaded.head == HEAD_ENCODER:
                dev = single_sentences(dev)
            sets[f"{task.name}-dev"] = [(e.text_a, e.text_b) for e in dev]
        except DataError:
            pass
    if not sets:
        sets["builtin"] = builtin_set(pair)
    sets["hard"] = hard_set(pair)
    added = added_token_set(loaded.tokenizer, pair)
    if added:
        sets["added-tokens"] = added
    return check_tokenizer_parity(loaded.tokenizer, in_graph, sets, loaded.max_sequence_length)


def parity_section(parity: TokenizerParity, allowed: bool) -> dict[str, Any]:
    return {
        "checked": parity.checked,
        "mismatched": parity.mismatched,
        "sets": dict(parity.sets),
        "fields": ["input_ids", "token_type_ids", "attention_mask"],
        "passed": parity.passed,
        "over_length": parity.over_length,
        "mismatch_allowed": allowed and not parity.passed and not parity.over_length,
        "mismatches": [
            {**to_jsonable(item), "summary": describe_mismatch(item)} for item in parity.mismatches
        ],
    }


def calibration_examples(
    task: GlueTask | None, options: CompileOptions, target: Target
) -> list[Example]:
    """Seeded sample of the task's train split, for a recipe that reads one (its `calibration`).

    A REQUIRED recipe (static INT8) cannot do without it. An OPTIONAL one (ort-mobile's dynamic
    recipe) can: it then neither smooths nor keeps a MatMul fp32 and says so in a note, so there
    a task without data at hand is not an error unless --data-dir named the data.
    """
    need = target.calibration(options.quantization or target.default_quantization, options.recipe)
    if need is Calibration.NONE:
        return []
    required = need is Calibration.REQUIRED
    if task is None:
        if not required:
            return []
        raise UsageError(
            "static INT8 needs calibration sentences: pass --task (e.g. sst2; stsb for a "
            "sentence encoder) and --data-dir (a glue_data folder), or use --quantization dynamic"
        )
    try:
        examples = load_examples(task, "train", options.data_dir)
    except DataError:
        if required or options.data_dir is not None:
            raise
        return []
    return sample_examples(examples, options.calibration_samples, seed=CALIBRATION_SEED)


def calibration_inputs(
    loaded: LoadedModel, examples: Sequence[Example]
) -> list[dict[str, np.ndarray]]:
    """Each example tokenized alone at its real length, as the deployed model will see it."""
    inputs = []
    for example in examples:
        encoded = loaded.tokenizer(
            example.text_a,
            example.text_b,
            truncation=True,
            max_length=loaded.max_sequence_length,
            return_tensors="np",
        )
        inputs.append(model_inputs(encoded, loaded.input_names))
    return inputs


def save_tokenizer(loaded: LoadedModel, directory: Path) -> None:
    """The checkpoint's tokenizer, told the artifact's maximum length so apps truncate alike."""
    loaded.tokenizer.model_max_length = loaded.max_sequence_length
    loaded.tokenizer.save_pretrained(str(directory))


def build_manifest(
    loaded: LoadedModel,
    options: CompileOptions,
    task: GlueTask | None,
    calibration: Sequence[Example],
    graph,
    build,
    artifact: Path,
    reproducibility: str,
) -> dict[str, Any]:
    files = describe_files(artifact)
    model_bytes = sum(files[name]["bytes"] for name in build.model_files)
    # Each model file compressed on its own and summed: what a zip or gzip'd download costs.
    zlib_bytes = sum(zlib_compressed_bytes(artifact / name, 6) for name in build.model_files)
    fp32_bytes = graph.path.stat().st_size
    return {
        "schema_version": SCHEMA_VERSION,
        "target": options.target,
        # The one place the task is recorded; verify and run read it from here.
        "task": task.name if task else None,
        "toolchain": toolchain_versions(),
        "host": host_description(),
        "source": {
            "id": loaded.source,
            "path": str(loaded.directory.resolve()),
            "family": loaded.family.name,
            "weights": loaded.weight_files,
        },
        "model": {
            "head": loaded.head,
            "labels": loaded.label_map,
            "max_sequence_length": loaded.max_sequence_length,
            "inputs": loaded.input_names,
            # Where token_type_ids come from: the tokenizer, or zeros when it gives none.
            "token_type_ids": "tokenizer"
            if "token_type_ids" in tokenizer_input_names(loaded.tokenizer)
            else "zeros",
            "outputs": loaded.output_names,
            "sentence_embedding": "mean of last_hidden_state over attention_mask (not normalised)"
            if "sentence_embedding" in loaded.output_names
            else None,
            "tokenizer_dir": TOKENIZER_DIR,
            "config": loaded.config,
        },
        # What the outputs mean (problem type, scores, label map): run, verify and apps read it.
        "head": head_section(loaded.config, loaded.head, loaded.label_map),
        "export": {
            "exporter": "torch.onnx.export (TorchScript)",
            "opset": graph.opset,
            "fp32_onnx_bytes": fp32_bytes,
            "fp32_onnx_sha256": sha256_file(graph.path),
            "exact_rewrites": list(graph.rewrites),
        },
        "parity": graph.parity,
        "quantization": build.quantization,
        "calibration": {
            "task": task.name,
            "split": "train",
            "samples": len(calibration),
            "seed": CALIBRATION_SEED,
            "data_dir": str(options.data_dir) if options.data_dir else None,
        }
        if calibration
        else None,
        "runtime": build.runtime,
        "size": {
            "model_bytes": model_bytes,
            "fp32_onnx_bytes": fp32_bytes,
            "ratio_to_fp32_onnx": round(model_bytes / fp32_bytes, 4),
            "zlib6_bytes": zlib_bytes,
            "zlib6_ratio_to_model_bytes": round(zlib_bytes / model_bytes, 4),
            "zlib6_method": "each model file compressed on its own with zlib level 6, summed",
        },
        "sparsity": {
            **to_jsonable(loaded.sparsity),
            "int8": to_jsonable(build.int8_weight_zeros),
        },
        "files": files,
        "reproducibility": reproducibility,
        "notes": list(loaded.notes)
        + list(build.notes)
        + list(getattr(build.quantization, "notes", ())),
    }
