"""`bertc sign`, and the key options of compile, verify and run (`--sign-key`, `--public-key`).

The work is `bertc.compiler.signing`'s (OpenSSF model-signing, imported only when a key is
given); here are the flags and the command.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from bertc.compiler.cli import output

SignKey = Annotated[
    Path | None,
    typer.Option(
        "--sign-key",
        help="Sign the artifact with this private key (PEM, elliptic-curve) before it is "
        "moved into place: writes model.sig.",
        show_default=False,
    ),
]
PublicKey = Annotated[
    Path | None,
    typer.Option(
        "--public-key",
        help="Refuse the artifact (exit 16) unless model.sig is this public key's signature "
        "(PEM) over exactly its files.",
        show_default=False,
    ),
]


def check_signature(artifact: Path, public_key: Path | None) -> None:
    """With a key: the artifact's signature, checked before anything else reads it."""
    if public_key is not None:
        from bertc.compiler.signing import verify_signature

        verify_signature(artifact, public_key)


def sign_command(
    artifact: Annotated[Path, typer.Argument(help="Artifact directory to sign.")],
    key: Annotated[
        Path,
        typer.Option(
            "--key", help="Private key (PEM, elliptic-curve P-256/384/521).", show_default=False
        ),
    ],
) -> None:
    """Sign an artifact with a private key: writes ARTIFACT/model.sig, which covers every file
    (the manifest included). The artifact's integrity is checked first (exit 11)."""
    from bertc.compiler.core.manifest import check_integrity, read_manifest
    from bertc.compiler.signing import check_signing_key, sign_artifact

    check_signing_key(key)
    check_integrity(artifact, read_manifest(artifact))
    signature = sign_artifact(artifact, key)
    output.stdout.print(f"signed {artifact} → {signature}", highlight=False)


COMMANDS: dict[str, Callable[..., None]] = {"sign": sign_command}
