"""The BERT model families bertc compiles, one small declarative class each.

A family says how to recognise its checkpoints, how to normalise their config for
`transformers.BertConfig`, and which extra weights it carries that the compiled model ignores.
Siblings reuse a family by inheritance; adding one is a class and a line in `FAMILIES`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

from bertc.compiler.core.errors import UnsupportedModelError

# Keys every BERT config has; TinyBERT's original config has these but no model_type.
_BERT_CONFIG_KEYS = frozenset(
    {"hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size"}
)


class ModelFamily:
    """Plain BERT: Google's miniatures, bert-base and its pruned variants."""

    name: ClassVar[str] = "bert"
    extra_weight_prefixes: ClassVar[tuple[str, ...]] = ()
    extra_weight_reason: ClassVar[str] = ""

    @classmethod
    def matches(cls, config: dict[str, Any], tensor_names: Sequence[str]) -> bool:
        return config.get("model_type") == "bert"

    @classmethod
    def normalise_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        return {**config, "model_type": "bert"}

    @classmethod
    def is_known_extra(cls, tensor_name: str) -> bool:
        bare = tensor_name.removeprefix("bert.")
        return any(bare.startswith(prefix) for prefix in cls.extra_weight_prefixes)

    @classmethod
    def notes_for(cls, tensor_names: Iterable[str]) -> tuple[str, ...]:
        extras = [name for name in tensor_names if cls.is_known_extra(name)]
        if not extras:
            return ()
        return (f"ignored {len(extras)} {cls.extra_weight_reason} weights ({extras[0]}, ...)",)


class TinyBertFamily(ModelFamily):
    """Huawei's TinyBERT: a BERT whose checkpoint adds `fit_denses`, the distillation projections
    from the student's width to the teacher's; inference never uses them."""

    name = "tinybert"
    extra_weight_prefixes = ("fit_dense",)
    extra_weight_reason = "TinyBERT fit_denses (distillation-only projection)"

    @classmethod
    def matches(cls, config: dict[str, Any], tensor_names: Sequence[str]) -> bool:
        has_fit_denses = any(cls.is_known_extra(name) for name in tensor_names)
        bert_shaped = (
            config.get("model_type") in (None, "bert") and set(config) >= _BERT_CONFIG_KEYS
        )
        return bert_shaped and (has_fit_denses or config.get("model_type") is None)


class MiniLmFamily(ModelFamily):
    """Microsoft MiniLM and its sentence-transformers descendants: BERT-shaped, usually 384 wide."""

    name = "minilm"

    @classmethod
    def matches(cls, config: dict[str, Any], tensor_names: Sequence[str]) -> bool:
        origin = str(config.get("_name_or_path", "")).lower()
        return config.get("model_type") == "bert" and "minilm" in origin


# Most specific first: the first family that matches wins.
FAMILIES: tuple[type[ModelFamily], ...] = (TinyBertFamily, MiniLmFamily, ModelFamily)


def check_supported(config: dict[str, Any]) -> None:
    """Refuse a non-BERT config before any weights are read."""
    model_type = config.get("model_type")
    architectures = config.get("architectures") or []
    foreign = [name for name in architectures if not name.startswith("Bert")]
    bert_shaped = model_type == "bert" or (model_type is None and set(config) >= _BERT_CONFIG_KEYS)
    if bert_shaped and not foreign:
        return
    _raise_unsupported(config)


def detect_family(config: dict[str, Any], tensor_names: Sequence[str]) -> type[ModelFamily]:
    """The family of a checkpoint, or one line saying why it is not a BERT bertc can compile."""
    check_supported(config)
    for family in FAMILIES:
        if family.matches(config, tensor_names):
            return family
    _raise_unsupported(config)


def _raise_unsupported(config: dict[str, Any]) -> None:
    model_type = config.get("model_type")
    architectures = ", ".join(config.get("architectures") or []) or "none listed"
    raise UnsupportedModelError(
        f"unsupported architecture: model_type={model_type!r} (architectures: {architectures}); "
        "bertc compiles BERT-family models (BERT, TinyBERT, MiniLM)"
    )
