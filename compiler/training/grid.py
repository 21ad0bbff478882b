"""`run_grid`: the BERT miniatures' fine-tuning grid, best on dev, in-process or on Ray Tune.

Turc et al. (2019) fine-tune each miniature with batch sizes {8, 16, 32, 64, 128} and learning
rates {3e-4, 1e-4, 5e-5, 3e-5} for 4 epochs and keep the best on dev. Every trial is an ordinary
`finetune_model` run; the winner's checkpoint becomes `--out`, with `grid.json` and `grid.md`
(every trial's settings, dev metrics and wall time) beside its `finetune.json`.

Engines: `in-process` runs the trials one after another; `ray` hands them to Ray Tune's `Tuner`
(a local Ray instance, or the cluster at `--ray-address`), one CPU per trial, and each trial
reports its dev metrics and its checkpoint through `ray.tune.report`, so the winner is fetched
from Ray's storage. Both pick the winner by the same rule: highest headline metric, then the
earlier trial in grid order, so a grid gives the same winner on either engine.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import Any

from bertc.calibration import get_task
from bertc.compiler.core.errors import BertcError, TrainingDivergedError, UsageError
from bertc.compiler.core.files import (
    TRAINING_OUTPUT,
    make_staging_dir,
    move_into_place,
    report_text,
)
from bertc.compiler.core.progress import Progress, silent
from bertc.compiler.training.finetune import (
    FinetuneOptions,
    check_options,
    finetune_model,
    options_to_json,
)

SEED_BATCH_SIZES = (8, 16, 32, 64, 128)
SEED_LEARNING_RATES = (3e-4, 1e-4, 5e-5, 3e-5)
GRID_NAMES = ("seed",)
GRID_REPORT = "grid.json"
GRID_TABLE = "grid.md"


class Engine(str, Enum):
    IN_PROCESS = "in-process"
    RAY = "ray"


@dataclass(frozen=True)
class GridOptions:
    grid: str = "seed"
    batch_sizes: tuple[int, ...] = SEED_BATCH_SIZES
    learning_rates: tuple[float, ...] = SEED_LEARNING_RATES
    max_trials: int | None = None
    engine: Engine = Engine.IN_PROCESS
    ray_address: str | None = None
    ray_cpus: int | None = None
    cpus_per_trial: int = 1


@dataclass(frozen=True)
class Trial:
    index: int
    batch_size: int
    learning_rate: float

    @property
    def name(self) -> str:
        return f"trial-{self.index:02d}-bs{self.batch_size}-lr{self.learning_rate:g}"


@dataclass(frozen=True)
class TrialResult:
    trial: Trial
    dev_metrics: Mapping[str, float]
    steps: int
    wall_time_s: float
    error: str | None = None


@dataclass(frozen=True)
class GridResult:
    out_dir: Path
    engine: Engine
    headline_metric: str
    trials: tuple[TrialResult, ...]
    winner: TrialResult
    wall_time_s: float
    report: Mapping[str, Any]


def grid_trials(options: GridOptions) -> list[Trial]:
    """The trials in grid order (batch size, then learning rate), cut at `max_trials`."""
    if options.grid not in GRID_NAMES:
        raise UsageError(f"unknown grid {options.grid!r}; known: {', '.join(GRID_NAMES)}")
    if not options.batch_sizes or not options.learning_rates:
        raise UsageError("the grid needs at least one batch size and one learning rate")
    if any(size <= 0 for size in options.batch_sizes):
        raise UsageError(f"grid batch sizes must be positive, got {list(options.batch_sizes)}")
    if any(not (rate > 0 and math.isfinite(rate)) for rate in options.learning_rates):
        raise UsageError(f"grid learning rates must be positive, got {options.learning_rates}")
    if options.max_trials is not None and options.max_trials <= 0:
        raise UsageError(f"--max-trials must be at least 1, got {options.max_trials}")
    pairs = [(size, rate) for size in options.batch_sizes for rate in options.learning_rates]
    pairs = pairs[: options.max_trials or len(pairs)]
    return [Trial(index, size, rate) for index, (size, rate) in enumerate(pairs)]


def pick_winner(results: Sequence[TrialResult], metric: str) -> TrialResult:
    """Highest headline metric (NaN and failed trials last), ties to the earlier trial."""

    def score(result: TrialResult) -> float:
        value = result.dev_metrics.get(metric, math.nan) if result.error is None else math.nan
        return -math.inf if math.isnan(value) else value

    completed = [result for result in results if result.error is None]
    if not completed:
        raise BertcError(f"every grid trial failed; first: {results[0].error}")
    return max(completed, key=lambda result: (score(result), -result.trial.index))


def run_grid(
    source: str,
    out_dir: Path,
    options: FinetuneOptions,
    grid: GridOptions,
    progress: Progress = silent,
) -> GridResult:
    """Run every trial of the grid, keep the best on dev as `out_dir`, with the trial table."""
    started = time.perf_counter()
    out_dir = Path(out_dir)
    check_options(options, out_dir, [source])
    if options.resume:
        raise UsageError("--resume applies to one run, not to a --grid")
    trials = grid_trials(grid)
    task = get_task(options.task)
    workspace = make_staging_dir(out_dir, "grid")
    try:
        progress(f"grid of {len(trials)} trials on {grid.engine.value}")
        if grid.engine is Engine.RAY:
            results, fetch = _run_on_ray(source, options, grid, trials, task, workspace)
        else:
            results = _run_in_process(source, options, trials, workspace, progress)
            fetch = lambda result: workspace / result.trial.name  # noqa: E731
        winner = pick_winner(results, task.headline_metric)
        winner_dir = fetch(winner)
        report = _grid_report(source, options, grid, task.headline_metric, results, winner)
        report["wall_time_s"] = round(time.perf_counter() - started, 2)
        (winner_dir / GRID_REPORT).write_text(report_text(report), encoding="utf-8")
        (winner_dir / GRID_TABLE).write_text(
            render_table(results, task.headline_metric, winner) + "\n", encoding="utf-8"
        )
        move_into_place(winner_dir, out_dir, options.overwrite, TRAINING_OUTPUT)
    finally:
        shutil.rmtree(workspace, ignore_errors=True)
    return GridResult(
        out_dir=out_dir,
        engine=grid.engine,
        headline_metric=task.headline_metric,
        trials=tuple(results),
        winner=winner,
        wall_time_s=report["wall_time_s"],
        report=report,
    )


def trial_options(options: FinetuneOptions, trial: Trial) -> FinetuneOptions:
    return replace(
        options,
        batch_size=trial.batch_size,
        learning_rate=trial.learning_rate,
        resume=False,
        keep_checkpoints=False,
        overwrite=False,
        progress_bar=False,
    )


def _run_in_process(
    source: str,
    options: FinetuneOptions,
    trials: Sequence[Trial],
    workspace: Path,
    progress: Progress,
) -> list[TrialResult]:
    results = []
    for trial in trials:
        progress(f"{trial.name} ({trial.index + 1}/{len(trials)})")
        try:
            result = finetune_model(source, workspace / trial.name, trial_options(options, trial))
        except TrainingDivergedError as error:  # a failed trial; the others still count
            results.append(TrialResult(trial, {}, 0, 0.0, error=str(error)))
            progress(f"{trial.name}: {error}")
            continue
        results.append(
            TrialResult(trial, dict(result.dev_metrics), result.steps, result.wall_time_s)
        )
        progress(f"{trial.name}: {result.headline_metric} {result.headline:.4f}")
    return results


# ---- Ray Tune ----


def ray_trial(config: dict[str, Any]) -> None:
    """One grid trial inside a Ray worker: fine-tune, report the dev metrics and the checkpoint."""
    from ray import tune

    options = FinetuneOptions(
        **{
            **config["options"],
            "data_dir": Path(config["options"]["data_dir"])
            if config["options"]["data_dir"]
            else None,
        }
    )
    trial = Trial(**config["trial"])
    with tempfile.TemporaryDirectory(prefix="bertc-trial-") as scratch:
        out = Path(scratch) / trial.name
        result = finetune_model(config["source"], out, trial_options(options, trial))
        metrics = {
            "trial_index": trial.index,
            "steps": result.steps,
            "train_wall_time_s": result.wall_time_s,
            **{f"dev_{name}": value for name, value in result.dev_metrics.items()},
        }
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(out)))


def _run_on_ray(source, options, grid: GridOptions, trials, task, workspace: Path):
    try:
        import ray
        from ray import tune
    except ImportError as error:
        raise UsageError(
            "--engine ray needs Ray Tune: pip install 'bertc[ray]' (ray[tune])"
        ) from error
    # Each trial checkpoints once; Ray's "snapshotting too often" advice does not apply here.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    started_here = not ray.is_initialized()
    if started_here:
        init: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if grid.ray_address:
            init["address"] = grid.ray_address
        else:
            init["num_cpus"] = grid.ray_cpus
        try:
            ray.init(**init)
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise UsageError(f"cannot start or reach Ray ({grid.ray_address}): {error}") from error
    try:
        tuner = tune.Tuner(
            tune.with_resources(ray_trial, {"cpu": grid.cpus_per_trial}),
            # One grid_search over the trial list keeps --max-trials' subset and its order.
            param_space={
                "source": str(Path(source).resolve()) if Path(source).exists() else source,
                # Absolute paths: Ray runs each trial in its own working directory.
                "options": options_to_json(
                    replace(
                        options,
                        threads=options.threads or grid.cpus_per_trial,
                        data_dir=Path(options.data_dir).resolve() if options.data_dir else None,
                    )
                ),
                "trial": tune.grid_search(
                    [
                        {
                            "index": t.index,
                            "batch_size": t.batch_size,
                            "learning_rate": t.learning_rate,
                        }
                        for t in trials
                    ]
                ),
            },
            tune_config=tune.TuneConfig(
                metric=f"dev_{task.headline_metric}",
                mode="max",
                # A worker keeps torch and bertc imported between trials; every trial re-seeds.
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                name="grid",
                storage_path=str((workspace / "ray").resolve()),
                verbose=0,
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            ),
        )
        grid_results = tuner.fit()
    finally:
        if started_here:
            ray.shutdown()
    results, checkpoints = [], {}
    for result in grid_results:
        trial = trials[int(result.config["trial"]["index"])]
        if result.error is not None:
            message = (str(result.error).strip().splitlines() or ["failed"])[-1]
            results.append(TrialResult(trial, {}, 0, 0.0, error=message))
            continue
        metrics = result.metrics
        dev = {name: float(metrics[f"dev_{name}"]) for name in task.metrics}
        results.append(
            TrialResult(trial, dev, int(metrics["steps"]), float(metrics["train_wall_time_s"]))
        )
        checkpoints[trial.index] = result.checkpoint
    results.sort(key=lambda item: item.trial.index)

    def fetch(winner: TrialResult) -> Path:
        return Path(checkpoints[winner.trial.index].to_directory(str(workspace / "winner")))

    return results, fetch


# ---- reporting ----


def _grid_report(source, options, grid: GridOptions, metric, results, winner) -> dict[str, Any]:
    return {
        "source": str(source),
        "task": get_task(options.task).name,
        "engine": grid.engine.value,
        "ray_address": grid.ray_address,
        "grid": grid.grid,
        "headline_metric": metric,
        "budget": {
            "epochs": options.epochs,
            "max_steps": options.max_steps,
            "train_samples": options.train_samples,
            "seed": options.seed,
        },
        "trials": [
            {
                "index": result.trial.index,
                "name": result.trial.name,
                "batch_size": result.trial.batch_size,
                "learning_rate": result.trial.learning_rate,
                "steps": result.steps,
                "wall_time_s": result.wall_time_s,
                "dev_metrics": dict(result.dev_metrics),
                "error": result.error,
            }
            for result in results
        ],
        "winner": winner.trial.index,
    }


def render_table(results: Sequence[TrialResult], metric: str, winner: TrialResult) -> str:
    """A Markdown table of every trial, the winner marked."""
    names = sorted(
        {name for result in results for name in result.dev_metrics},
        key=lambda name: (name != metric, name),
    )
    lines = [
        "| trial | batch size | learning rate | steps | " + " | ".join(names) + " | train s | |",
        "|---|---|---|---|" + "---|" * len(names) + "---|---|",
    ]
    for result in results:
        values = " | ".join(
            f"{result.dev_metrics[name]:.4f}" if name in result.dev_metrics else "-"
            for name in names
        )
        mark = "**best**" if result.trial.index == winner.trial.index else (result.error or "")
        lines.append(
            f"| {result.trial.index} | {result.trial.batch_size} | "
            f"{result.trial.learning_rate:g} | {result.steps} | {values} | "
            f"{result.wall_time_s:.1f} | {mark} |"
        )
    return "\n".join(lines)


__all__ = [
    "SEED_BATCH_SIZES",
    "SEED_LEARNING_RATES",
    "Engine",
    "GridOptions",
    "GridResult",
    "Trial",
    "TrialResult",
    "grid_trials",
    "pick_winner",
    "render_table",
    "run_grid",
]
