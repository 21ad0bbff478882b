"""Atomic file-system steps, and what bertc may replace.

Every writer builds its output in a staging directory beside the destination
(`.NAME.partial-PID-XXXX`, made by `make_staging_dir`), then renames it into place
(`move_into_place`). At every instant one complete version exists (the old one or the new one),
never a half-written one; on the same file system a rename is atomic (POSIX rename(2)).

`--overwrite` replaces only what bertc made (`check_output`): a bertc artifact (a manifest of
bertc's schema) for compile, a bertc training output (its report file) for finetune, distill
and prune, and only while it holds nothing else (a file the user added is never deleted); an
--out that is an input of the run, holds one or lies inside one is refused, existing or not.
A staging or set-aside directory whose process is gone (killed, power lost) is swept by the next
writer to the same destination.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from bertc.compiler.core.errors import OutputExistsError, OutputWriteError, UsageError
from bertc.compiler.core.manifest import MANIFEST_FILE, REPORTS_DIR, SIGNATURE_FILE

# The report each training command writes into its output (finetune, distill, prune).
TRAINING_REPORTS = ("finetune.json", "distill.json", "prune.json")
# What every one of those reports records.
REPORT_KEYS = frozenset({"task", "training", "dev_metrics"})
ARTIFACT = "artifact"
TRAINING_OUTPUT = "training output"
# Kinds of temporary sibling: a build in progress, an old output set aside, a grid's trials.
STAGING_KINDS = ("partial", "old", "grid")
# A training run's per-epoch states live beside its --out, in OUT.checkpoints/epoch-N/.
CHECKPOINTS_SUFFIX = ".checkpoints"
STATE_FILE = "training_state.pt"
HASH_SUFFIX = ".sha256"
EPOCH_DIR = re.compile(r"^epoch-(\d+)$")
# What an epoch directory may hold: the state, its hash, and their in-flight temporaries.
_STATE_ENTRY = re.compile(
    rf"^(?:{re.escape(STATE_FILE)}(?:{re.escape(HASH_SUFFIX)}|\.partial)?"
    rf"|\.{re.escape(STATE_FILE + HASH_SUFFIX)}\..+\.tmp)$"
)
PREVIOUS = "previous"  # the old output's name inside its `.NAME.old-PID-XXXX` directory
# What a full, read-only or forbidden file system answers a write with.
WRITE_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}
)


def write_text_atomically(path: Path, text: str) -> Path:
    """Write `text` (UTF-8) to a temporary sibling of `path`, then rename it into place.

    Raises OSError from the file system (read-only, full disk); the temporary file is removed.
    """
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def finite_json(value: Any) -> Any:
    """`value` with every NaN or infinite float (in dicts, lists, tuples) replaced by None:
    strict JSON has no such numbers."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite_json(item) for item in value]
    return value


def report_text(report: Any) -> str:
    """A report as strict JSON (indented, keys sorted, a final newline): non-finite floats
    become null (`finite_json`), so no reader meets a bare NaN or Infinity."""
    return json.dumps(finite_json(report), indent=2, sort_keys=True, allow_nan=False) + "\n"


# ---- what bertc made ----


def _json_object(path: Path) -> dict | None:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) else None


def is_bertc_artifact(path: Path) -> bool:
    """A directory whose manifest.json is bertc's: an integer `schema_version` and a `toolchain`
    that records bertc's version (every manifest bertc has written has both)."""
    manifest = _json_object(Path(path) / MANIFEST_FILE) if Path(path).is_dir() else None
    if manifest is None:
        return False
    toolchain = manifest.get("toolchain")
    return (
        isinstance(manifest.get("schema_version"), int)
        and isinstance(toolchain, dict)
        and "bertc" in toolchain
    )


def is_bertc_training_output(path: Path) -> bool:
    """A directory holding a checkpoint's config.json and one of the training commands' reports
    (finetune.json, distill.json, prune.json) as a JSON object with the `task`, `training` and
    `dev_metrics` every such report records."""
    path = Path(path)
    if not (path.is_dir() and (path / "config.json").is_file()):
        return False
    reports = (_json_object(path / name) for name in TRAINING_REPORTS)
    return any(report is not None and report.keys() >= REPORT_KEYS for report in reports)


def checkpoint_dir_for(out_dir: Path) -> Path:
    """Where the per-epoch checkpoints of a training run writing `out_dir` live."""
    out_dir = Path(out_dir)
    return out_dir.with_name(out_dir.name + CHECKPOINTS_SUFFIX)


def is_bertc_checkpoints(path: Path) -> bool:
    """A real directory (not a link) holding nothing but `epoch-N` directories of training
    states (training_state.pt, its .sha256, and their temporaries), or nothing at all."""
    path = Path(path)
    if path.is_symlink() or not path.is_dir():
        return False
    for epoch in path.iterdir():
        if epoch.is_symlink() or not epoch.is_dir() or not EPOCH_DIR.match(epoch.name):
            return False
        for entry in epoch.iterdir():
            if entry.is_symlink() or not entry.is_file() or not _STATE_ENTRY.match(entry.name):
                return False
    return True


def check_checkpoints(out_dir: Path, sources: Iterable[str | Path] = ()) -> None:
    """OutputExistsError (exit 13) when `out_dir`'s checkpoints directory (`checkpoint_dir_for`)
    exists and a training run may not create, resume from or remove it: it is not bertc's own
    (`is_bertc_checkpoints`), or it is, holds or lies inside one of the run's inputs. Cheap:
    commands call it before anything heavy is imported."""
    checkpoints = checkpoint_dir_for(out_dir)
    if not (checkpoints.exists() or checkpoints.is_symlink()):
        return
    for source in sources:
        relation = _relation(checkpoints, Path(source)) if Path(source).exists() else None
        if relation:
            raise OutputExistsError(
                f"{checkpoints} (where this run keeps its checkpoints) {relation} the run's "
                f"input {source}; choose another --out"
            )
    if not is_bertc_checkpoints(checkpoints):
        raise OutputExistsError(
            f"{checkpoints} exists and is not bertc's checkpoints directory (it holds other "
            "files); this run would replace it: move it away or choose another --out"
        )


RECOGNISERS: dict[str, Callable[[Path], bool]] = {
    ARTIFACT: is_bertc_artifact,
    TRAINING_OUTPUT: is_bertc_training_output,
}

# What an artifact holds besides the files its manifest lists: verify's reports, a signature
# (and its partial file while it is written).
ARTIFACT_EXTRAS = frozenset(
    {MANIFEST_FILE, SIGNATURE_FILE, f".{SIGNATURE_FILE}.partial", REPORTS_DIR}
)
# What a training output holds: save_pretrained's checkpoint and tokenizer files, and the
# training commands' (and the grid's) reports.
TRAINING_FILES = frozenset(
    {
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "model.safetensors.index.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "vocab.txt",
        "added_tokens.json",
        "grid.json",
        "grid.md",
        *TRAINING_REPORTS,
    }
)
_SHARD = re.compile(r"model-\d{5}-of-\d{5}\.safetensors")


def _is_temporary(name: str, expected: Iterable[str]) -> bool:
    """bertc's own temporary file beside an expected one (`write_text_atomically`'s
    `.NAME.*.tmp`)."""
    return name.endswith(".tmp") and any(name.startswith(f".{known}.") for known in expected)


def _unexpected_file(out_dir: Path, kind: str) -> str | None:
    """The first entry (sorted, relative POSIX path) of `out_dir` that the bertc output of `kind`
    does not account for, or None: an artifact holds what its manifest lists plus
    ARTIFACT_EXTRAS; a training output holds TRAINING_FILES and safetensors shards."""
    if kind == ARTIFACT:
        manifest = _json_object(out_dir / MANIFEST_FILE) or {}
        listed = manifest.get("files")
        expected = set(listed) if isinstance(listed, dict) else set()
        expected |= ARTIFACT_EXTRAS
    else:
        expected = set(TRAINING_FILES)
    tops = {name.split("/")[0] for name in expected}
    for path in sorted(out_dir.rglob("*")):
        name = path.relative_to(out_dir).as_posix()
        if name in expected or name.split("/")[0] == REPORTS_DIR and kind == ARTIFACT:
            continue
        if path.is_dir() and not path.is_symlink() and name in tops | _prefixes(expected):
            continue
        if "/" not in name and (_SHARD.fullmatch(name) and kind != ARTIFACT):
            continue
        if _is_temporary(path.name, expected | tops):
            continue
        return name
    return None


def _prefixes(names: Iterable[str]) -> set[str]:
    """Every folder above each of `names` ("a/b/c" gives "a" and "a/b")."""
    parts = (name.split("/") for name in names)
    return {"/".join(split[:i]) for split in parts for i in range(1, len(split))}


def _resolved(path: Path) -> Path:
    """`path` absolute with links and `..` resolved in its nearest existing ancestor (and `..`
    taken lexically in the part that does not exist yet)."""
    return Path(os.path.realpath(Path(path).absolute()))


def _relation(out_dir: Path, source: Path) -> str | None:
    """How `out_dir` relates to `source` (resolved, links followed): "is", "holds", "lies
    inside", or None when neither holds the other."""
    out, src = _resolved(out_dir), _resolved(source)
    if out == src:
        return "is"
    if out in src.parents:
        return "holds"
    return "lies inside" if src in out.parents else None


def _check_creatable(out_dir: Path) -> None:
    """UsageError (exit 2) when a file stands where a folder above `out_dir` would be made."""
    for parent in out_dir.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise UsageError(
                    f"cannot create {out_dir}: {parent} is a file; choose another --out"
                )
            return


def check_output(
    out_dir: Path, overwrite: bool, kind: str = ARTIFACT, sources: Iterable[str | Path] = ()
) -> None:
    """Refuse an `out_dir` a run must not write: OutputExistsError (exit 13) when it is a source
    of the run, holds one or lies in one (existing or not: links and `..` resolved), or when it
    exists and either `overwrite` is off, or it is not a bertc output of `kind` (ARTIFACT or
    TRAINING_OUTPUT), or it holds a file such an output does not (`_unexpected_file`: a file the
    user put there is never deleted); UsageError (2) when a file
    stands where one of its parents would be made. Cheap (reads two small JSON files at most):
    commands call it before anything heavy is imported."""
    out_dir = Path(out_dir)
    for source in sources:
        relation = _relation(out_dir, Path(source)) if Path(source).exists() else None
        if relation:
            refused = "--overwrite refused: " if overwrite else ""
            raise OutputExistsError(
                f"{refused}{out_dir} {relation} the run's input {source}; choose another --out"
            )
    if not (out_dir.exists() or out_dir.is_symlink()):
        _check_creatable(out_dir)
        return
    if not overwrite:
        raise OutputExistsError(
            f"{out_dir} already exists; choose another --out or pass --overwrite"
        )
    if not RECOGNISERS[kind](out_dir):
        what = "a file" if out_dir.is_file() else "a directory"
        raise OutputExistsError(
            f"--overwrite refused: {out_dir} is {what} bertc did not make (not a bertc {kind}); "
            "--overwrite replaces only a previous bertc output: choose another --out"
        )
    unexpected = _unexpected_file(out_dir, kind)
    if unexpected is not None:
        raise OutputExistsError(
            f"--overwrite refused: {out_dir} holds {unexpected}, which bertc did not write; "
            "move it out of the way or choose another --out"
        )


# ---- staging, sweeping, replacing ----


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turn a refused write under `path` (full disk, read-only, no permission) into one
    OutputWriteError (exit 17) naming it; other OSErrors pass through."""
    try:
        yield
    except OSError as error:
        if error.errno not in WRITE_ERRNOS:
            raise
        where = error.filename or path
        raise OutputWriteError(
            f"cannot write {where}: {error.strerror or error} (free space or permissions?)"
        ) from error


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, owned by someone else
        return True
    return True


def _owner_pid(name: str, destination: str) -> int | None:
    """The PID in `.DEST.KIND-PID-XXXX`, or None for any other name."""
    for kind in STAGING_KINDS:
        prefix = f".{destination}.{kind}-"
        if name.startswith(prefix):
            pid, _, rest = name[len(prefix) :].partition("-")
            if pid.isdigit() and rest:
                return int(pid)
    return None


def sweep_stale(destination: Path) -> list[Path]:
    """Remove the temporary siblings of `destination` whose process is gone; never a live one's.
    An old output set aside by a process killed before its replacement was renamed in goes back
    to `destination`. Returns what was removed."""
    destination = Path(destination)
    removed = []
    if not destination.parent.is_dir():
        return removed
    for sibling in destination.parent.iterdir():
        pid = _owner_pid(sibling.name, destination.name)
        if pid is None or _process_alive(pid) or not sibling.is_dir():
            continue
        previous = sibling / PREVIOUS
        if previous.exists() and not (destination.exists() or destination.is_symlink()):
            os.rename(previous, destination)  # killed between its two renames: put it back
        shutil.rmtree(sibling, ignore_errors=True)
        removed.append(sibling)
    return removed


def _create_parent(out_dir: Path) -> None:
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as error:
        raise UsageError(
            f"cannot create {out_dir.parent}: {error.strerror}; choose another --out"
        ) from error


def _directory_mode() -> int:
    """The mode `mkdir` gives under the process's umask (0755 under the usual 022)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o777 & ~umask


def make_staging_dir(destination: Path, kind: str = "partial") -> Path:
    """A fresh `.NAME.KIND-PID-XXXX` beside `destination` (its parents created), mode as
    `mkdir` makes it (not mkdtemp's 0700), after sweeping stale siblings of dead processes.

    Raises UsageError (2) when the parent cannot be a directory, OutputWriteError (17) when the
    file system refuses the write."""
    destination = Path(destination)
    with writing(destination.parent):
        _create_parent(destination)
        sweep_stale(destination)
        staging = Path(
            tempfile.mkdtemp(
                prefix=f".{destination.name}.{kind}-{os.getpid()}-", dir=destination.parent
            )
        )
        staging.chmod(_directory_mode())
    return staging


def move_into_place(staged: Path, out_dir: Path, overwrite: bool, kind: str = ARTIFACT) -> None:
    """Rename the finished directory `staged` to `out_dir`.

    An existing `out_dir` is replaced only with `overwrite` and only when it is (still) a bertc
    output of `kind` (`check_output`, run again here: the user may have put files there while
    the run worked): it is renamed aside, `staged` renamed in, then the old one removed. Raises
    OutputExistsError (13) when `out_dir` appeared meanwhile without `overwrite` (e.g. a second
    compile to the same --out won the race), OutputWriteError (17) when the write is refused.
    """
    staged, out_dir = Path(staged), Path(out_dir)
    with writing(out_dir):
        if overwrite and (out_dir.exists() or out_dir.is_symlink()):
            check_output(out_dir, overwrite, kind)
            aside = make_staging_dir(out_dir, "old") / PREVIOUS
            os.replace(out_dir, aside)
            try:
                os.rename(staged, out_dir)
            except BaseException:
                os.replace(aside, out_dir)
                aside.parent.rmdir()
                raise
            shutil.rmtree(aside.parent, ignore_errors=True)
            return
        if out_dir.exists() or out_dir.is_symlink():
            raise OutputExistsError(f"{out_dir} appeared while this run worked; pass --overwrite")
        try:
            os.rename(staged, out_dir)  # refused onto a non-empty directory or a file
        except OSError as error:
            if error.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
                raise OutputExistsError(
                    f"{out_dir} appeared while this run worked (another run to the same --out?)"
                ) from error
            raise
