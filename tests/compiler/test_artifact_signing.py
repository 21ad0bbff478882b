"""compiler/signing.py on a hand-made artifact: what the signature covers and leaves out, how
it is written, which keys it takes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bertc.compiler.core.errors import SignatureError, UsageError
from bertc.compiler.signing import (
    PARTIAL_SIGNATURE_FILE,
    SIGNATURE_FILE,
    check_signing_key,
    sign_artifact,
    verify_signature,
)
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


def key_pair(directory: Path, curve=None, password: bytes | None = None) -> tuple[Path, Path]:
    key = ec.generate_private_key(curve or ec.SECP256R1())
    encryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    private, public = directory / "key.pem", directory / "key.pub"
    private.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


@pytest.fixture
def artifact(tmp_path: Path) -> Path:
    directory = tmp_path / "artifact"
    (directory / "tokenizer").mkdir(parents=True)
    (directory / "manifest.json").write_text(json.dumps({"schema_version": 1}))
    (directory / "model.onnx").write_bytes(b"\x00model\x01")
    (directory / "tokenizer" / "vocab.txt").write_text("[PAD]\n")
    return directory


def test_sign_then_verify(artifact: Path, tmp_path: Path) -> None:
    private, public = key_pair(tmp_path)
    signature = sign_artifact(artifact, private)
    assert signature == artifact / SIGNATURE_FILE
    assert not (artifact / PARTIAL_SIGNATURE_FILE).exists()
    verify_signature(artifact, public)


def test_the_signature_covers_the_manifest(artifact: Path, tmp_path: Path) -> None:
    private, public = key_pair(tmp_path)
    sign_artifact(artifact, private)
    (artifact / "manifest.json").write_text(json.dumps({"schema_version": 1, "task": "x"}))
    with pytest.raises(SignatureError, match="manifest.json changed since signing"):
        verify_signature(artifact, public)


def test_reports_are_outside_the_signature_and_a_new_signature_replaces_the_old(
    artifact: Path, tmp_path: Path
) -> None:
    private, public = key_pair(tmp_path)
    sign_artifact(artifact, private)
    first = (artifact / SIGNATURE_FILE).read_bytes()
    (artifact / "reports").mkdir()
    (artifact / "reports" / "verify-sst2.json").write_text("{}")
    verify_signature(artifact, public)
    sign_artifact(artifact, private)  # the old signature is not part of what is signed
    assert (artifact / SIGNATURE_FILE).read_bytes() != first
    verify_signature(artifact, public)


def test_a_removed_file_is_refused(artifact: Path, tmp_path: Path) -> None:
    private, public = key_pair(tmp_path)
    sign_artifact(artifact, private)
    (artifact / "tokenizer" / "vocab.txt").unlink()
    with pytest.raises(SignatureError):
        verify_signature(artifact, public)


def test_a_symbolic_link_is_refused(artifact: Path, tmp_path: Path) -> None:
    private, public = key_pair(tmp_path)
    sign_artifact(artifact, private)
    (artifact / "link").symlink_to(tmp_path)
    with pytest.raises(SignatureError):
        verify_signature(artifact, public)


@pytest.mark.parametrize("curve", [ec.SECP384R1(), ec.SECP521R1()])
def test_the_larger_curves_sign(artifact: Path, tmp_path: Path, curve) -> None:
    private, public = key_pair(tmp_path, curve)
    check_signing_key(private)
    sign_artifact(artifact, private)
    verify_signature(artifact, public)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: key_pair(d, ec.SECP256K1())[0], "P-256, P-384 or P-521"),
        (lambda d: key_pair(d, password=b"secret")[0], "not a usable signing key"),
        (lambda d: key_pair(d)[1], "not a usable signing key"),
        (lambda d: d / "absent.pem", "cannot read the private key"),
    ],
    ids=["secp256k1", "encrypted", "public half", "absent"],
)
def test_an_unusable_signing_key_is_a_usage_error(tmp_path: Path, make, message) -> None:
    with pytest.raises(UsageError, match=message):
        check_signing_key(make(tmp_path))


def test_verify_with_a_private_key_file_is_a_usage_error(artifact: Path, tmp_path: Path) -> None:
    private, _ = key_pair(tmp_path)
    sign_artifact(artifact, private)
    (tmp_path / "garbage.pub").write_text(
        "-----BEGIN PUBLIC KEY-----\nxx\n-----END PUBLIC KEY-----\n"
    )
    with pytest.raises(UsageError, match="not a usable public key"):
        verify_signature(artifact, tmp_path / "garbage.pub")


def test_a_missing_model_signing_package_is_a_usage_error_with_the_install_line(
    artifact: Path, tmp_path: Path, monkeypatch
) -> None:
    import sys

    private, _ = key_pair(tmp_path)
    monkeypatch.setitem(sys.modules, "model_signing.signing", None)  # import fails
    with pytest.raises(UsageError, match="pip install 'model-signing>=1.1' pyopenssl"):
        sign_artifact(artifact, private)
