"""The BERT model families bertc compiles, one small declarative class each.

A family says how to recognise its checkpoints, which checkpoint contract its config must meet
(`attributes`, a table of `contract.py`), how to normalise its config for
`transformers.BertConfig`, and which extra weights it carries that the compiled model ignores.
Siblings reuse a family by inheritance; adding one is a class and a line in `FAMILIES`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

from bertc.compiler.contract import (
    BERT_ATTRIBUTES,
    BERT_SHAPE_KEYS,
    Attribute,
    contract_violations,
)
from bertc.compiler.core.errors import UnsupportedModelError

_BERT_CONFIG_KEYS = BERT_SHAPE_KEYS
# Attributes whose violation means "not a BERT at all" rather than "a BERT bertc cannot compile".
_ARCHITECTURE_ATTRIBUTES = ("model_type", "architectures")


class ModelFamily:
    """Plain BERT: Google's miniatures, bert-base and its pruned variants."""

    name: ClassVar[str] = "bert"
    attributes: ClassVar[tuple[Attribute, ...]] = BERT_ATTRIBUTES
    extra_weight_prefixes: ClassVar[tuple[str, ...]] = ()
    extra_weight_reason: ClassVar[str] = ""

    @classmethod
    def matches(cls, config: dict[str, Any], tensor_names: Sequence[str]) -> bool:
        return config.get("model_type") == "bert"

    @classmethod
    def normalise_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        """The config BertConfig gets: feed-forward chunking (a memory knob over the same
        function, whose position loop a trace would freeze) off."""
        return {**config, "model_type": "bert", "chunk_size_feed_forward": 0}

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


def family_of_config(config: dict[str, Any]) -> type[ModelFamily]:
    """The family a config alone points to (TinyBERT's fit_denses show only in the weights)."""
    return next((family for family in FAMILIES if family.matches(config, ())), ModelFamily)


def check_supported(config: dict[str, Any]) -> None:
    """Refuse, before any weights are read, a config outside its family's checkpoint contract:
    one line naming every violated attribute and its value (UnsupportedModelError, exit 5)."""
    found = contract_violations(config, family_of_config(config).attributes)
    if not found:
        return
    listed = "; ".join(str(violation) for violation in found)
    if any(violation.attribute in _ARCHITECTURE_ATTRIBUTES for violation in found):
        raise UnsupportedModelError(
            f"unsupported architecture: {listed}; bertc compiles BERT-family models "
            "(BERT, TinyBERT, MiniLM)"
        )
    raise UnsupportedModelError(f"config.json is outside bertc's checkpoint contract: {listed}")


def detect_family(config: dict[str, Any], tensor_names: Sequence[str]) -> type[ModelFamily]:
    """The family of a checkpoint, or one line saying why it is not a BERT bertc can compile."""
    check_supported(config)
    for family in FAMILIES:
        if family.matches(config, tensor_names):
            return family
    return ModelFamily
