"""Render a `VerifyReport`: a rich table for the terminal, Markdown for people, JSON for machines.

Rendering only: every number is computed elsewhere in `bertc.compiler.verify`; here it is
formatted.
Metrics are shown in points (x100) where the report stores them on a 0-1 scale.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from bertc.compiler.core.manifest import to_jsonable
from bertc.compiler.verify.model import HOST_CORE

if TYPE_CHECKING:
    from bertc.compiler.verify.model import PlatformCheck, VerifyReport
    from rich.console import RenderableType

JSON_SCHEMA = "bertc.verify/1"


def _points(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value * 100:.2f}"


def _signed(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:+.2f}"


def _ci(low: float, high: float) -> str:
    return "n/a" if math.isnan(low) else f"[{low:+.2f}, {high:+.2f}]"


def _bytes(count: int) -> str:
    return f"{count / 1e6:.1f} MB ({count:,} bytes)"


def _number(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.{digits}g}"


def _agreement(report: VerifyReport) -> str:
    agreement = report.agreement
    if agreement.embedding_cosine_mean is not None:
        return (
            f"embedding cosine vs fp32 mean {_number(agreement.embedding_cosine_mean, 6)}, "
            f"min {_number(agreement.embedding_cosine_min, 6)} over "
            f"{agreement.embedded_sentences} sentences; Pearson r of the pair similarities "
            f"{_number(agreement.prediction_pearson, 6)}"
        )
    if agreement.rate is None:
        return (
            f"n/a (regression); Pearson r of predictions {_number(agreement.prediction_pearson, 6)}"
        )
    return f"{agreement.rate * 100:.2f}% ({agreement.disagreements} of {report.examples} differ)"


def _threads(report: VerifyReport) -> str:
    environment = report.environment
    requested = environment.threads_requested or "runtime default"
    if environment.runtime_threads is None:
        return str(requested)
    return f"{requested} (runtime reports {environment.runtime_threads})"


def _isa(host: Any) -> str:
    if not host:
        return "unknown"
    return (
        f"{host.get('machine', '?')}: {' '.join(host.get('isa', [])) or 'none of the INT8 flags'}"
    )


def summary_rows(report: VerifyReport) -> list[tuple[str, str]]:
    """The non-metric facts, in the order both the table and the Markdown show them."""
    environment = report.environment
    latency = report.latency
    error = report.output_error
    compared = "logit" if report.compared_output == "logits" else "embedding"
    return [
        ("prediction agreement", _agreement(report)),
        (
            f"{compared} error vs fp32",
            f"max {error.max_abs:.4g}, mean {error.mean_abs:.4g}, rmse {error.rmse:.4g}",
        ),
        (
            "padded batch vs batch 1",
            f"max abs {compared} difference {error.batch_padding_max_abs:.3g}",
        ),
        (
            "batch-1 latency",
            f"median {latency.batch1_median_ms:.2f} ms, p90 {latency.batch1_p90_ms:.2f} ms "
            f"(real length, median {latency.median_tokens:g} tokens)",
        ),
        (
            f"throughput at batch {latency.batch_size}",
            f"{latency.batch_sentences_per_s:.1f} sentences/s ({latency.batch_padding})",
        ),
        ("model size", f"{_bytes(report.model_bytes)}: {', '.join(report.model_files)}"),
        (
            "runtime",
            f"{environment.runtime} {environment.runtime_version} "
            f"(target {environment.target}, bertc {environment.bertc_version})",
        ),
        ("precision", environment.precision or "n/a"),
        ("threads", _threads(report)),
        ("build machine ISA", _isa(environment.build_host)),
        ("this machine ISA", _isa(environment.verify_host)),
        (
            "reference",
            f"{report.reference} (torch {environment.torch_version}, "
            f"{environment.reference_threads} thread(s), batch 1)",
        ),
    ]


PLATFORM_COLUMNS = (
    "machine",
    "way",
    "examples",
    "agree x86",
    "max |Δ| x86",
    "mean |Δ| x86",
    "agree fp32",
    "max |Δ| fp32",
    "wall s*",
)


def _share(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.2f}%"


def _difference(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def platform_rows(check: PlatformCheck) -> list[tuple[str, ...]]:
    """One row per machine and way, in PLATFORM_COLUMNS' order (x86 first, its vs-x86 cells
    empty); a failing emulated row's core is marked."""
    return [
        (
            (row.platform if row.core == HOST_CORE else f"{row.platform} {row.core}")
            + ("" if row.passed else " FAIL"),
            row.way,
            str(row.examples),
            _share(row.agreement_x86),
            _difference(row.max_abs_x86),
            _difference(row.mean_abs_x86),
            _share(row.agreement_fp32),
            _difference(row.max_abs_fp32),
            f"{row.seconds:.1f}",
        )
        for row in check.rows
    ]


def platform_caption(check: PlatformCheck) -> str:
    return (
        "Δ: logit difference; agree: share with the same class; *wall time, loading and "
        f"emulation included: not a latency. {check.examples} of {check.split_examples} "
        f"examples (seed {check.sample_seed}); "
        f"{check.emulator}; aarch64 wheels "
        + ", ".join(f"{name} {version}" for name, version in sorted(check.runtime_versions.items()))
    )


def _platform_table(check: PlatformCheck) -> RenderableType:
    from rich.table import Table

    table = Table(title=f"--platform {check.platform}", caption=platform_caption(check))
    for column in PLATFORM_COLUMNS:
        table.add_column(column, justify="left" if column in ("machine", "way") else "right")
    for row in platform_rows(check):
        table.add_row(*row)
    return table


def render_table(report: VerifyReport) -> RenderableType:
    """Metrics table and summary table, with the gate's verdict as the caption."""
    from rich.console import Group
    from rich.table import Table

    metrics = Table(
        title=f"bertc verify: {report.task} {report.split} ({report.examples} examples)",
        caption=f"Δ and 95% CI in points (paired bootstrap, {report.bootstrap_samples} resamples)",
    )
    metrics.add_column("metric")
    metrics.add_column("fp32 reference", justify="right")
    metrics.add_column("artifact", justify="right")
    metrics.add_column("Δ points", justify="right")
    metrics.add_column("95% CI", justify="right")
    for metric in report.metrics:
        name = f"{metric.name} (headline)" if metric.name == report.headline_metric else metric.name
        metrics.add_row(
            name,
            _points(metric.reference),
            _points(metric.artifact),
            _signed(metric.delta_points),
            _ci(metric.ci_low_points, metric.ci_high_points),
        )
    summary = Table(show_header=False, box=None, padding=(0, 1))
    summary.add_column(style="bold")
    summary.add_column()
    for label, value in summary_rows(report):
        summary.add_row(label, value)
    gate_style = "bold green" if report.gate.passed else "bold red"
    parts: list[Any] = [metrics, summary, f"[{gate_style}]{_escape(report.gate.message)}[/]"]
    if report.platform is not None:
        style = "bold green" if report.platform.passed else "bold red"
        parts += [
            _platform_table(report.platform),
            f"[{style}]{_escape(report.platform.message)}[/]",
        ]
        parts.extend(f"note: {_escape(note)}" for note in report.platform.notes)
    parts.extend(f"note: {_escape(note)}" for note in report.notes)
    return Group(*parts)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def render_markdown(report: VerifyReport) -> str:
    """The human-readable report written to reports/verify-<task>.md."""
    lines = [
        f"# bertc verify: {report.task} ({report.split}, {report.examples} examples)",
        "",
        f"**{report.gate.message}**",
        "",
        f"Artifact `{report.artifact_dir}`; reference {report.reference}.",
        "",
        f"| metric | fp32 reference | artifact | Δ points | 95% CI (paired bootstrap, "
        f"{report.bootstrap_samples} resamples, seed {report.seed}) |",
        "|---|---|---|---|---|",
    ]
    for metric in report.metrics:
        name = (
            f"**{metric.name}** (headline)"
            if metric.name == report.headline_metric
            else metric.name
        )
        lines.append(
            f"| {name} | {_points(metric.reference)} | {_points(metric.artifact)} | "
            f"{_signed(metric.delta_points)} | {_ci(metric.ci_low_points, metric.ci_high_points)} |"
        )
    lines += ["", "| | |", "|---|---|"]
    lines += [f"| {label} | {value} |" for label, value in summary_rows(report)]
    if report.agreement.disagreement_lines:
        shown = ", ".join(str(line) for line in report.agreement.disagreement_lines)
        lines += [
            "",
            f"Examples where the predictions differ (line numbers in the {report.split} file, "
            f"first {len(report.agreement.disagreement_lines)}): {shown}.",
        ]
    if report.notes:
        lines += ["", "Notes:"] + [f"- {note}" for note in report.notes]
    if report.platform is not None:
        lines += ["", *platform_markdown(report.platform)]
    return "\n".join(lines) + "\n"


def platform_markdown(check: PlatformCheck) -> list[str]:
    """The `--platform` section of the Markdown report: verdict, table, caption, notes."""
    lines = [
        f"## --platform {check.platform}",
        "",
        f"**{check.message}**",
        "",
        "| " + " | ".join(PLATFORM_COLUMNS) + " |",
        "|" + "---|" * len(PLATFORM_COLUMNS),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in platform_rows(check)]
    lines += ["", platform_caption(check) + "."]
    return lines + [f"- {note}" for note in check.notes]


def report_to_json(report: VerifyReport) -> dict[str, Any]:
    """Plain JSON values; NaN (an undefined correlation) becomes null for strict parsers."""
    data = _finite(to_jsonable(report))
    data["schema"] = JSON_SCHEMA
    return data


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value
