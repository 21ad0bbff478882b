"""`bertc platform install arm64` and verify's `--platform` flags.

The installer never runs apt-get on the host's own package state: qemu-user-static needs root
and changes the machine's packages, a decision for its owner; a missing emulator is one line
naming the command to run (exit 19). Everything else goes into bertc's cache
(`$BERTC_PLATFORM_DIR/arm64`, default `~/.cache/bertc/platforms/arm64`).
"""

from __future__ import annotations

from typing import Annotated

import typer
from bertc.compiler.cli.options import fraction
from bertc.compiler.core.errors import UsageError

PLATFORMS = ("arm64",)


def platform_spec(value: str | None) -> tuple[str, ...] | None:
    """`--platform`: the emulated cores it names (`arm64`: all of them); UsageError otherwise."""
    if value is None:
        return None
    from bertc.compiler.verify.platform import parse_platform

    return parse_platform(value)


def sample_limit(param: typer.CallbackParam, value: str) -> int | None:
    """`--limit`: a number of examples >= 1, or `all`."""
    if value.strip().lower() == "all":
        return None
    if not value.strip().isdigit() or int(value) < 1:
        raise UsageError(f"--limit must be a number of examples >= 1 or all, got {value!r}")
    return int(value)


def max_error(param: typer.CallbackParam, value: float) -> float:
    import math

    if not (math.isfinite(value) and value >= 0):
        raise UsageError(f"--platform-max-error must be a logit difference >= 0, got {value}")
    return value


PlatformSpec = Annotated[
    str | None,
    typer.Option(
        "--platform",
        help="Also run the artifact on its runtime's aarch64 build under QEMU emulation and "
        "compare with this machine's run: arm64 (cores a55, a72, a76, v9), arm64:a76, or "
        "several comma-separated. Installs the emulated platform on first use.",
        show_default=False,
    ),
]
PlatformLimit = Annotated[
    str,
    typer.Option(
        "--limit",
        help="--platform: examples in the seeded sample (--seed) of the split, or all.",
        callback=sample_limit,
    ),
]
PlatformMaxError = Annotated[
    float,
    typer.Option(
        help="--platform gate: largest |logit difference| from this machine's run.",
        callback=max_error,
    ),
]
PlatformMinAgreement = Annotated[
    float,
    typer.Option(
        help="--platform gate: least share of the sample predicting x86's class.",
        callback=fraction,
    ),
]

platform_app = typer.Typer(
    help="Emulated platforms for `bertc verify --platform` (ARM64 under QEMU).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@platform_app.command("install")
def install_command(
    name: Annotated[str, typer.Argument(help="The platform: arm64.")],
) -> None:
    """Set up the emulated platform in bertc's cache, one line per step (idempotent).

    Needs qemu-user-static on the host (`sudo apt-get install qemu-user-static`: bertc does not
    run it), apt-get and dpkg-deb (Debian's arm64 Python) and pip (the runtimes' aarch64 wheels);
    $BERTC_PLATFORM_DIR sets the cache folder.
    """
    if name not in PLATFORMS:
        raise UsageError(f"unknown platform {name!r}: {', '.join(PLATFORMS)}")
    from bertc.targets.platforms.arm64 import install

    layout = install()
    print(f"arm64 platform ready: {layout.root}")
