"""Signed artifacts: who built it, not only whether it changed.

The manifest's hashes detect corruption and naive edits, but anyone who edits a file can also
rewrite the hashes. A signature made with a team's private key proves the artifact came from its
build: `sign_artifact` writes `model.sig` (an OpenSSF model-signing bundle: the sha256 of every
file, the manifest included, signed with an elliptic-curve key) into the artifact, and
`verify_signature` refuses an artifact that is unsigned, signed by another key, or whose files
differ in any byte from what was signed, an added file included (SignatureError, exit 16).

Keys are PEM elliptic-curve keys on P-256, P-384 or P-521 (what model-signing supports):
`openssl ecparam -genkey -name prime256v1 -noout -out signing.pem` and
`openssl ec -in signing.pem -pubout -out signing.pub`. Signing with a key works offline;
Sigstore's keyless signing (OIDC identity, transparency log) needs the network and is not wired.

`reports/` (verify's reports, written after the build) is left out of the signature, as it is
left out of the manifest's file list; the signature file itself is left out too.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from bertc.compiler.core.errors import SignatureError, UsageError
from bertc.compiler.core.manifest import MANIFEST_FILE, REPORTS_DIR, SIGNATURE_FILE

# The signature while it is written, renamed to SIGNATURE_FILE when complete.
PARTIAL_SIGNATURE_FILE = f".{SIGNATURE_FILE}.partial"
# Paths inside the artifact that the signature does not cover.
UNSIGNED_PATHS = (SIGNATURE_FILE, PARTIAL_SIGNATURE_FILE, REPORTS_DIR)


def _model_signing(module: str):
    """A module of the model-signing package; UsageError (exit 2) with the install line when it
    (or pyOpenSSL, which model-signing 1.1 imports without declaring it) is missing."""
    import importlib

    try:
        return importlib.import_module(f"model_signing.{module}")
    except ImportError as error:
        raise UsageError(
            f"signing needs the model-signing package ({error}): "
            "pip install 'model-signing>=1.1' pyopenssl"
        ) from error


def _hashing_config():
    hashing = _model_signing("hashing")

    return (
        hashing.Config()
        .use_file_serialization(hashing_algorithm="sha256")
        .set_ignored_paths(paths=UNSIGNED_PATHS, ignore_git_paths=False)
    )


def _check_key_file(path: Path, kind: str) -> None:
    """UsageError (exit 2) naming a key file that cannot be read or is not PEM."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise UsageError(f"cannot read the {kind} key {path}: {error.strerror or error}") from error
    if b"-----BEGIN" not in data:
        raise UsageError(f"{path} is not a PEM {kind} key")


SUPPORTED_CURVES = ("secp256r1", "secp384r1", "secp521r1")
# What model-signing raises for a key it cannot use (bad PEM, encrypted, not elliptic-curve).
_KEY_ERRORS = (ValueError, TypeError, AttributeError)


def check_signing_key(private_key: Path) -> None:
    """UsageError (exit 2) unless `private_key` is an unencrypted elliptic-curve private key in
    PEM that model-signing can sign with: checked before a compile spends minutes."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    _check_key_file(private_key, "private")
    try:
        key = serialization.load_pem_private_key(Path(private_key).read_bytes(), None)
    except _KEY_ERRORS as error:
        raise UsageError(f"{private_key} is not a usable signing key: {_one_line(error)}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name not in SUPPORTED_CURVES:
        raise UsageError(
            f"{private_key} is not a P-256, P-384 or P-521 elliptic-curve key "
            "(what model-signing signs with)"
        )


def sign_artifact(artifact_dir: Path, private_key: Path) -> Path:
    """Sign every file of the artifact (manifest included, `reports/` and an old signature left
    out) with the PEM elliptic-curve `private_key` (unencrypted) and write `model.sig`
    atomically (written beside it, then renamed into place). Returns the signature's path.

    The caller checks the artifact's integrity first: a signature vouches for what it signs.
    Raises UsageError for an unreadable or unsupported key (exit 2).
    """
    signing = _model_signing("signing")

    artifact_dir = Path(artifact_dir)
    _check_key_file(private_key, "private")
    if not (artifact_dir / MANIFEST_FILE).is_file():
        raise UsageError(f"{artifact_dir} is not a bertc artifact (no {MANIFEST_FILE})")
    try:
        config = signing.Config().set_hashing_config(_hashing_config())
        config.use_elliptic_key_signer(private_key=Path(private_key))
    except _KEY_ERRORS as error:
        raise UsageError(
            f"{private_key} is not a usable signing key (an unencrypted P-256/384/521 "
            f"elliptic-curve key in PEM): {_one_line(error)}"
        ) from error
    partial = artifact_dir / PARTIAL_SIGNATURE_FILE
    try:
        config.sign(artifact_dir, partial)
        os.chmod(partial, 0o644)
        os.replace(partial, artifact_dir / SIGNATURE_FILE)
    finally:
        partial.unlink(missing_ok=True)
    return artifact_dir / SIGNATURE_FILE


def verify_signature(artifact_dir: Path, public_key: Path) -> None:
    """Refuse the artifact unless `model.sig` is a signature by `public_key` (PEM) over exactly
    its files: SignatureError (exit 16) when it is missing, made with another key, damaged, or
    when any file was edited, removed or added since signing. UsageError for a bad key file."""
    verifying = _model_signing("verifying")

    artifact_dir = Path(artifact_dir)
    _check_key_file(public_key, "public")
    signature = artifact_dir / SIGNATURE_FILE
    if not signature.is_file():
        raise SignatureError(
            f"{artifact_dir} is not signed (no {SIGNATURE_FILE}); sign it with `bertc sign`"
        )
    try:
        config = verifying.Config().set_hashing_config(_hashing_config())
        config.use_elliptic_key_verifier(public_key=Path(public_key))
    except _KEY_ERRORS as error:
        raise UsageError(
            f"{public_key} is not a usable public key (a P-256/384/521 elliptic-curve key in "
            f"PEM): {_one_line(error)}"
        ) from error
    try:
        config.verify(artifact_dir, signature)
    except Exception as error:  # noqa: BLE001  (model-signing raises ValueError, protobuf and
        # cryptography errors for a bad signature; any of them means: not verified)
        raise SignatureError(
            f"{artifact_dir} failed signature verification with {public_key}: {_one_line(error)}"
        ) from error


def _one_line(error: BaseException) -> str:
    """model-signing's message in one line; a hash mismatch names the file, not the digests."""
    text = " ".join(str(error).split()) or type(error).__name__
    changed = re.findall(r"Hash mismatch for '([^']+)'", text)
    if changed:
        others = re.findall(r"((?:Extra|Missing) files[^\]\"']*)", text)
        text = "; ".join([f"{name} changed since signing" for name in changed] + others)
    return text if len(text) <= 300 else text[:297] + "..."
