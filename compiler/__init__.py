"""bertc's Python API: every stage of the CLI as a function, for a team's own build scripts.

    from bertc.compiler import CompileOptions, compile_artifact, verify_artifact

    result = compile_artifact("path/to/checkpoint", Path("artifacts/sst2"),
                              CompileOptions(target="openvino", task="sst2", data_dir=glue))
    report = verify_artifact(result.artifact_dir, "sst2", data_dir=glue)  # raises GateFailedError
    print(report.headline.delta, report.agreement.rate)

The names resolve lazily (PEP 562): `import bertc.compiler` imports no torch, runtime or quantizer,
and neither do `CompileOptions`, the enums and `load_artifact`; a stage function imports its
module, and with it torch, when it is first looked up. Errors are `bertc.compiler.core.errors`
subclasses of `BertcError`, each with the CLI's exit code in `.exit_code`.
"""

from __future__ import annotations

import importlib
from typing import Any

# Public name -> (module, attribute).
_API = {
    "compile_artifact": ("bertc.compiler.pipeline", "compile_model"),
    "compile_task": ("bertc.compiler.pipeline", "compile_task"),
    "CompileOptions": ("bertc.compiler.options", "CompileOptions"),
    "CompileResult": ("bertc.compiler.options", "CompileResult"),
    "verify_artifact": ("bertc.compiler.verify", "verify_artifact"),
    "VerifyReport": ("bertc.compiler.verify", "VerifyReport"),
    "inspect_artifact": ("bertc.compiler.inspection", "inspect_path"),
    "load_model": ("bertc.compiler.loading", "load_model"),
    "pack_artifact": ("bertc.compiler.packing", "pack_artifact"),
    "unpack_artifact": ("bertc.compiler.packing", "unpack_artifact"),
    "finetune_model": ("bertc.compiler.training", "finetune_model"),
    "FinetuneOptions": ("bertc.compiler.training", "FinetuneOptions"),
    "distill_model": ("bertc.compiler.training", "distill_model"),
    "DistillOptions": ("bertc.compiler.training", "DistillOptions"),
    "prune_model": ("bertc.compiler.training", "prune_model"),
    "PruneOptions": ("bertc.compiler.training", "PruneOptions"),
    "QuantizationMode": ("bertc.compiler.core.enums", "QuantizationMode"),
    "Recipe": ("bertc.compiler.core.enums", "Recipe"),
    "TokenizerMode": ("bertc.compiler.core.enums", "TokenizerMode"),
    "BertcError": ("bertc.compiler.core.errors", "BertcError"),
    "load_artifact": ("bertc.targets.loader", "load"),
}
__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name in _API:
        module, attribute = _API[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'bertc.compiler' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
