"""Every error bertc raises on purpose, in one flat module named by cause.

Each class carries the exit code the CLI returns for it, so a script can tell a bad input from a
failed gate without parsing text. Codes are stable: add new ones, never renumber.
"""

from __future__ import annotations


class BertcError(Exception):
    """Base of all expected failures: the message is one line a user can act on."""

    exit_code: int = 1


class UsageError(BertcError):
    """A flag or combination of flags that cannot work."""

    exit_code = 2


class ModelNotFoundError(BertcError):
    """The hub id is not in the local cache, or the directory does not exist."""

    exit_code = 3


class ModelFileError(BertcError):
    """A checkpoint file is missing, truncated or unreadable."""

    exit_code = 4


class UnsupportedModelError(BertcError):
    """The checkpoint is not a BERT-family model bertc knows how to compile."""

    exit_code = 5


class UnsafeCheckpointError(BertcError):
    """Only pickle weights are present and the user did not opt in to loading them."""

    exit_code = 6


class DataError(BertcError):
    """Task data is missing, empty or malformed."""

    exit_code = 7


class DataFileMissingError(DataError):
    """The expected file of a GLUE split is absent."""


class MalformedRowsError(DataError):
    """Rows of a GLUE file could not be parsed; the message names their line numbers."""


class EmptySplitError(DataError):
    """A split holds no examples."""


class ParityError(BertcError):
    """The exported graph does not reproduce PyTorch within tolerance."""

    exit_code = 8


class QuantizationError(BertcError):
    """The quantizer failed or produced a graph that cannot run."""

    exit_code = 9


class TargetBuildError(BertcError):
    """A runtime's converter or compiler rejected the graph."""

    exit_code = 10


class ArtifactError(BertcError):
    """An artifact directory is missing, incomplete or fails its integrity check."""

    exit_code = 11


class GateFailedError(BertcError):
    """The compiled model lost more accuracy than the gate allows."""

    exit_code = 12


class OutputExistsError(BertcError):
    """The output exists and is not replaced: --overwrite was not given; or it was, and the output
    is not a bertc output of the command's kind (an artifact for compile and unpack, a training
    output for finetune, distill and prune), or it is, holds or lies inside the run's input; or
    another run to the same output finished first."""

    exit_code = 13


class TokenizerMismatchError(BertcError):
    """The in-graph tokenizer's token ids differ from the Hugging Face tokenizer's."""

    exit_code = 14


class TokenizerConversionError(BertcError):
    """A runtime's tokenizer converter cannot express the checkpoint's tokenizer."""

    exit_code = 15


class SignatureError(BertcError):
    """A signature was asked for and the artifact is unsigned, signed by another key, or its
    files differ from what was signed."""

    exit_code = 16


class OutputWriteError(BertcError):
    """The file system refused to write the output: no space left (ENOSPC, EDQUOT), read-only
    (EROFS), or no permission (EACCES, EPERM). The message names the path."""

    exit_code = 17


class TrainingDivergedError(BertcError):
    """Training diverged: a non-finite loss or weights; nothing is written; lower
    --learning-rate."""

    exit_code = 18


class PlatformError(BertcError):
    """An emulated platform (`--platform arm64`) is not installed and cannot be (no
    qemu-aarch64-static: the message says how to install it), an install step failed, or the
    emulated run crashed or timed out. One line naming the step or the core."""

    exit_code = 19
