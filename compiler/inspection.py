"""`bertc inspect`: what a checkpoint or an artifact holds, layer by layer.

A checkpoint is read straight from its safetensors (no model is built), so inspecting a large
one costs a file read; an artifact is described from its manifest, which is checked first.
"""

from __future__ import annotations

import pickle
import re
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bertc.compiler.contract import contract_violations
from bertc.compiler.core.errors import BertcError, ModelFileError
from bertc.compiler.core.manifest import MANIFEST_FILE, check_integrity, read_manifest, to_jsonable
from bertc.compiler.core.sparsity import is_encoder_linear_weight, matrix_sparsity, summarise
from bertc.compiler.families import family_of_config
from bertc.compiler.loading import (
    _first_line,
    find_weight_files,
    load_tokenizer,
    read_config,
    refused_pickle,
    resolve_source,
    tokenizer_violations,
)
from safetensors import SafetensorError

_LAYER_PATTERN = re.compile(r"(?:^|\.)layer\.(\d+)\.")


def inspect_path(path: str, allow_pickle: bool = False) -> dict[str, Any]:
    """An artifact's summary if `path` holds a manifest, else the checkpoint's layer table
    (pickle weights only with `allow_pickle`, as everywhere else)."""
    candidate = Path(path)
    if (candidate / MANIFEST_FILE).is_file():
        return inspect_artifact(candidate)
    return inspect_checkpoint(path, allow_pickle=allow_pickle)


def inspect_artifact(directory: Path) -> dict[str, Any]:
    manifest = read_manifest(directory)
    check_integrity(directory, manifest)
    return {
        "kind": "artifact",
        "path": str(directory),
        "target": manifest["target"],
        "source": manifest["source"]["id"],
        "head": manifest["model"]["head"],
        "labels": manifest["model"]["labels"],
        "max_sequence_length": manifest["model"]["max_sequence_length"],
        "files": manifest["files"],
        "size": manifest["size"],
        "parity": manifest["parity"],
        "quantization": manifest.get("quantization"),
        "sparsity": manifest.get("sparsity"),
        "integrity": "ok",
    }


def layer_group(tensor_name: str) -> str:
    """`encoder layer N`, `embeddings`, `pooler`, `classifier`, or the name's first part."""
    match = _LAYER_PATTERN.search(tensor_name)
    if match:
        return f"layer {int(match.group(1)):02d}"
    bare = tensor_name.removeprefix("bert.")
    return bare.split(".")[0]


def read_tensors(weight_file: Path) -> Iterator[tuple[str, Any]]:
    """(name, torch tensor) of one weight file, sorted by name: safetensors read lazily, pickle
    through `torch.load(weights_only=True)` as transformers loads it."""
    if weight_file.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(weight_file), framework="pt") as handle:
            for name in sorted(handle.keys()):
                yield name, handle.get_tensor(name)
        return
    import torch

    state = torch.load(str(weight_file), map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"holds a {type(state).__name__}, not a state dict")
    for name in sorted(state):
        if isinstance(state[name], torch.Tensor):
            yield name, state[name]


def inspect_checkpoint(source: str, allow_pickle: bool = False) -> dict[str, Any]:
    """Parameters, bytes, dtype and zero fraction per layer, and each encoder weight matrix's
    sparsity pattern, from the weights alone."""
    directory = resolve_source(source)
    config = read_config(directory)
    groups: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"parameters": 0, "bytes": 0, "zeros": 0, "dtypes": set()}
    )
    matrices = []
    for weight_file in find_weight_files(directory, allow_pickle=allow_pickle):
        try:
            for name, tensor in read_tensors(weight_file):
                group = groups[layer_group(name)]
                group["parameters"] += tensor.numel()
                group["bytes"] += tensor.numel() * tensor.element_size()
                group["zeros"] += int((tensor == 0).sum()) if tensor.is_floating_point() else 0
                group["dtypes"].add(str(tensor.dtype).removeprefix("torch."))
                if is_encoder_linear_weight(name, tensor.dim()):
                    matrices.append(matrix_sparsity(name, tensor.float().numpy()))
        except pickle.UnpicklingError as error:
            raise refused_pickle(weight_file, error) from error
        except (OSError, RuntimeError, ValueError, EOFError, SafetensorError) as error:
            raise ModelFileError(
                f"{weight_file} is not readable (corrupt or truncated): {_first_line(error)}"
            ) from error
    layers = [
        {
            "layer": name,
            "parameters": group["parameters"],
            "bytes": group["bytes"],
            "sparsity": round(group["zeros"] / group["parameters"], 4)
            if group["parameters"]
            else 0.0,
            "dtype": ",".join(sorted(group["dtypes"])),
        }
        for name, group in sorted(groups.items())
    ]
    total = sum(layer["parameters"] for layer in layers)
    zeros = sum(layer["sparsity"] * layer["parameters"] for layer in layers)
    return {
        "kind": "checkpoint",
        "path": str(directory),
        "model_type": config.get("model_type"),
        "architectures": config.get("architectures"),
        "layers": layers,
        "parameters": total,
        "sparsity": round(zeros / total, 4) if total else 0.0,
        "weight_sparsity": to_jsonable(summarise(matrices)),
        "quantization": None,
        "contract": checkpoint_contract(directory, config),
    }


def checkpoint_contract(directory: Path, config: dict[str, Any]) -> list[str]:
    """Every way the checkpoint breaks bertc's contract (config rows and rules, then the
    tokenizer against the config), one line each; empty when bertc can compile it."""
    found = [str(v) for v in contract_violations(config, family_of_config(config).attributes)]
    if found:
        return found
    try:
        tokenizer = load_tokenizer(directory, config)
    except BertcError as error:
        return [str(error)]
    return tokenizer_violations(tokenizer, config)


def render_inspection(inspection: dict[str, Any]) -> list[Any]:
    """Rich tables for the terminal."""
    from rich.table import Table

    if inspection["kind"] == "checkpoint":
        table = Table(
            title=f"{inspection['path']} ({inspection['parameters']:,} parameters, "
            f"{inspection['sparsity']:.1%} zeros)"
        )
        for column in ("layer", "parameters", "bytes", "sparsity", "dtype"):
            table.add_column(column, justify="left" if column in ("layer", "dtype") else "right")
        for layer in inspection["layers"]:
            table.add_row(
                layer["layer"],
                f"{layer['parameters']:,}",
                f"{layer['bytes']:,}",
                f"{layer['sparsity']:.1%}",
                layer["dtype"],
            )
        contract = inspection.get("contract") or []
        verdict = (
            "contract: ok (bertc can compile this checkpoint)"
            if not contract
            else f"contract: {len(contract)} violation(s): " + "; ".join(contract)
        )
        return [table, *render_weight_sparsity(inspection["weight_sparsity"]), verdict]
    files = Table(
        title=f"{inspection['path']} → {inspection['target']} (integrity {inspection['integrity']})"
    )
    files.add_column("file")
    files.add_column("bytes", justify="right")
    files.add_column("sha256")
    for name, entry in inspection["files"].items():
        files.add_row(name, f"{entry['bytes']:,}", entry["sha256"][:16])
    renderables: list[Any] = [files]
    quantization = inspection.get("quantization")
    if quantization:
        ops = Table(
            title=f"quantization: {quantization['mode']} ({quantization['tool']}, "
            f"recipe {quantization['recipe']})"
        )
        ops.add_column("op type")
        ops.add_column("INT8", justify="right")
        ops.add_column("fp32", justify="right")
        ops.add_column("why fp32")
        kinds = sorted(set(quantization["int8_ops"]) | set(quantization["fp32_ops"]))
        for kind in kinds:
            ops.add_row(
                kind,
                str(quantization["int8_ops"].get(kind, 0)),
                str(quantization["fp32_ops"].get(kind, 0)),
                quantization["fp32_reasons"].get(kind, ""),
            )
        renderables.append(ops)
    size = inspection["size"]
    line = f"model bytes {size['model_bytes']:,} ({size['ratio_to_fp32_onnx']:.1%} of fp32 ONNX)"
    if "zlib6_bytes" in size:
        line += f", {size['zlib6_bytes']:,} compressed (zlib 6)"
    renderables.append(line)
    sparsity = inspection.get("sparsity")
    if sparsity:
        line = _sparsity_line(sparsity)
        int8 = sparsity.get("int8")
        if int8 and int8["fp32_zeros"]:  # a dense model has no zeros for INT8 to keep
            kept = "kept all" if int8["all_zeros_kept"] else "did NOT keep all"
            line += (
                f"; INT8 {kept} of them ({int8['fp32_zeros_kept']:,} of {int8['fp32_zeros']:,}) "
                f"and rounded {int8['rounded_to_zero']:,} small weights to zero"
            )
        renderables.append(line)
    return renderables


def render_weight_sparsity(report: dict[str, Any]) -> list[Any]:
    """A row per encoder weight matrix, and the model's summary line."""
    from rich.table import Table

    table = Table(title="encoder weight matrices")
    for column in ("matrix", "shape", "zeros", "sparsity", "pattern"):
        table.add_column(column, justify="left" if column in ("matrix", "pattern") else "right")
    for matrix in report["matrices"]:
        table.add_row(
            matrix["name"],
            "x".join(str(size) for size in matrix["shape"]),
            f"{matrix['zeros']:,}",
            f"{matrix['sparsity']:.1%}",
            matrix["pattern"],
        )
    return [table, _sparsity_line(report)]


def _sparsity_line(report: dict[str, Any]) -> str:
    return (
        f"encoder weights: {report['zeros']:,} of {report['parameters']:,} zero "
        f"({report['sparsity']:.1%}), pattern {report['pattern']}"
    )
