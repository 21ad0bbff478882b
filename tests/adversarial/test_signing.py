"""Signed artifacts: with `--public-key`, only an artifact signed by that key's private half, byte
for byte as signed, is accepted; anything else is refused with SignatureError (exit 16).

The hashes alone cannot prove origin: a manifest edited and resealed (its `manifest_sha256`
recomputed) passes the integrity check; only the signature refuses it.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from bertc.compiler.core.enums import QuantizationMode
from bertc.compiler.core.errors import ArtifactError, SignatureError, UsageError
from bertc.compiler.core.manifest import (
    MANIFEST_FILE,
    SIGNATURE_FILE,
    check_integrity,
    read_manifest,
    write_manifest,
)


def write_key_pair(directory: Path, name: str, curve: Any = None) -> tuple[Path, Path]:
    """(private PEM, public PEM) of a fresh elliptic-curve key (P-256 unless `curve`)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(curve or ec.SECP256R1())
    private, public = directory / f"{name}.pem", directory / f"{name}.pub"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    directory = tmp_path_factory.mktemp("keys")
    return {name: write_key_pair(directory, name) for name in ("team", "other")}


@pytest.fixture
def signed(compile_once, tiny_classifier, keys, tmp_path) -> Path:
    """A private copy of the tiny ONNX artifact, signed with the team key by `bertc sign`."""
    from bertc.compiler.signing import sign_artifact

    built = compile_once(tiny_classifier, "onnx", quantization=QuantizationMode.DYNAMIC)
    artifact = tmp_path / "signed"
    shutil.copytree(built.artifact_dir, artifact)
    sign_artifact(artifact, keys["team"][0])
    return artifact


def cli(monkeypatch, capsys, *args: Any) -> tuple[int, str, str]:
    """`bertc ARGS` in this process: (exit code, stdout, stderr)."""
    from bertc.compiler.cli import main

    monkeypatch.setattr(sys, "argv", ["bertc", *map(str, args)])
    capsys.readouterr()
    code = 0
    try:
        main()
    except SystemExit as exit:
        code = int(exit.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_with_key(artifact: Path, public_key: Path, monkeypatch, capsys) -> tuple[int, str, str]:
    return cli(monkeypatch, capsys, "run", artifact, "a fine film", "--public-key", public_key)


def test_a_signed_artifact_verifies_with_the_public_key(
    signed, keys, glue_data_dir, monkeypatch, capsys
) -> None:
    code, out, err = cli(
        monkeypatch,
        capsys,
        "verify",
        signed,
        "--task",
        "sst2",
        "--data-dir",
        glue_data_dir,
        "--max-drop",
        "100",
        "--bootstrap-samples",
        "10",
        "--public-key",
        keys["team"][1],
    )
    assert code == 0, err
    # verify wrote its reports into the artifact: still signed (reports/ is outside the signature)
    assert (signed / "reports").is_dir()
    code, out, err = run_with_key(signed, keys["team"][1], monkeypatch, capsys)
    assert code == 0, err
    assert out.split("\t")[0] in ("negative", "positive")


def _files_of(artifact: Path) -> list[str]:
    return [MANIFEST_FILE, *json.loads((artifact / MANIFEST_FILE).read_text())["files"]]


def test_one_edited_byte_in_any_file_is_refused(signed, keys, monkeypatch, capsys) -> None:
    names = _files_of(signed)
    assert len(names) >= 4
    for name in names:
        copy = signed.with_name(f"edited-{name.replace('/', '-')}")
        shutil.copytree(signed, copy)
        data = bytearray((copy / name).read_bytes())
        data[len(data) // 2] ^= 0x01
        (copy / name).write_bytes(bytes(data))
        code, _, err = run_with_key(copy, keys["team"][1], monkeypatch, capsys)
        assert code == SignatureError.exit_code == 16, (name, err)
        assert name in err and len(err.strip().splitlines()) == 1, (name, err)
        shutil.rmtree(copy)


def _remove_signature(artifact: Path) -> None:
    (artifact / SIGNATURE_FILE).unlink()


def _add_file(artifact: Path) -> None:
    (artifact / "extra.onnx").write_bytes(b"not signed")


def _damage_signature(artifact: Path) -> None:
    bundle = json.loads((artifact / SIGNATURE_FILE).read_text())
    envelope = bundle["dsseEnvelope"]
    signature = envelope["signatures"][0]["sig"]
    envelope["signatures"][0]["sig"] = ("A" if signature[0] != "A" else "B") + signature[1:]
    (artifact / SIGNATURE_FILE).write_text(json.dumps(bundle))


def _truncate_signature(artifact: Path) -> None:
    (artifact / SIGNATURE_FILE).write_text("{")


def _reseal_edited_labels(artifact: Path) -> None:
    """The edit a careful attacker makes: labels swapped, `manifest_sha256` recomputed, so the
    integrity check passes; only the signature can tell."""
    manifest = json.loads((artifact / MANIFEST_FILE).read_text())
    labels = manifest["model"]["labels"]
    swapped = {"0": labels["1"], "1": labels["0"]}
    manifest["model"]["labels"] = swapped
    if isinstance(manifest.get("head"), dict) and manifest["head"].get("labels"):
        manifest["head"]["labels"] = swapped  # consistent, as a careful attacker keeps it
    write_manifest(artifact, manifest)
    check_integrity(artifact, read_manifest(artifact))  # the hashes cannot see it


REFUSALS = {
    "signature removed": _remove_signature,
    "file added": _add_file,
    "signature damaged": _damage_signature,
    "signature not JSON": _truncate_signature,
    "manifest edited and resealed": _reseal_edited_labels,
}


@pytest.mark.parametrize("change", list(REFUSALS))
@pytest.mark.parametrize("reader", ("run", "verify"))
def test_an_unsigned_or_changed_artifact_is_refused(
    signed, keys, glue_data_dir, monkeypatch, capsys, change, reader
) -> None:
    REFUSALS[change](signed)
    extra = ["a fine film"] if reader == "run" else ["--data-dir", glue_data_dir]
    code, _, err = cli(monkeypatch, capsys, reader, signed, *extra, "--public-key", keys["team"][1])
    assert code == SignatureError.exit_code, err
    assert len(err.strip().splitlines()) == 1, err


def test_another_key_is_refused(signed, keys, monkeypatch, capsys) -> None:
    code, _, err = run_with_key(signed, keys["other"][1], monkeypatch, capsys)
    assert code == SignatureError.exit_code, err
    assert "public key" in err


def test_without_a_key_the_signature_is_not_required(signed, monkeypatch, capsys) -> None:
    _remove_signature(signed)
    code, _, err = cli(monkeypatch, capsys, "run", signed, "a fine film")
    assert code == 0, err


def test_bertc_sign_refuses_a_damaged_artifact(signed, keys, monkeypatch, capsys) -> None:
    """A signature vouches for what it signs: `bertc sign` checks integrity first."""
    _remove_signature(signed)
    (signed / "extra.txt").write_text("x")
    code, _, err = cli(monkeypatch, capsys, "sign", signed, "--key", keys["team"][0])
    assert code == ArtifactError.exit_code, err
    assert not (signed / SIGNATURE_FILE).exists()


@pytest.mark.parametrize("bad", ["missing", "public key", "not PEM", "RSA"])
def test_bertc_sign_refuses_a_key_it_cannot_sign_with(
    signed, keys, tmp_path, monkeypatch, capsys, bad
) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = tmp_path / "bad.pem"
    if bad == "public key":
        key = keys["team"][1]
    elif bad == "not PEM":
        key.write_bytes(b"\x00\x01")
    elif bad == "RSA":
        rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        key.write_bytes(
            rsa_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    before = (signed / SIGNATURE_FILE).read_bytes()
    code, _, err = cli(monkeypatch, capsys, "sign", signed, "--key", key)
    assert code == UsageError.exit_code, err
    assert len(err.strip().splitlines()) == 1, err
    assert (signed / SIGNATURE_FILE).read_bytes() == before


def test_compile_sign_key_end_to_end(
    tiny_classifier, glue_data_dir, keys, tmp_path, bertc_cli
) -> None:
    out = tmp_path / "artifact"
    built = bertc_cli(
        "compile",
        tiny_classifier,
        "--target",
        "onnx",
        "--quantization",
        "dynamic",
        "--tokenizer",
        "none",
        "--out",
        out,
        "--sign-key",
        keys["team"][0],
    )
    assert built.returncode == 0, built.stderr
    assert (out / SIGNATURE_FILE).is_file()
    assert SIGNATURE_FILE not in json.loads((out / MANIFEST_FILE).read_text())["files"]
    assert not list(tmp_path.glob(".artifact.partial-*"))
    ran = bertc_cli("run", out, "a fine film", "--public-key", keys["team"][1])
    assert ran.returncode == 0, ran.stderr
    wrong = bertc_cli("run", out, "a fine film", "--public-key", keys["other"][1])
    assert wrong.returncode == SignatureError.exit_code, wrong.stderr


def test_compile_with_an_unusable_sign_key_fails_before_building(
    tiny_classifier, tmp_path, keys, monkeypatch, capsys
) -> None:
    out = tmp_path / "artifact"
    code, _, err = cli(
        monkeypatch,
        capsys,
        "compile",
        tiny_classifier,
        "--target",
        "onnx",
        "--quantization",
        "dynamic",
        "--out",
        out,
        "--sign-key",
        keys["team"][1],  # the public half
    )
    assert code == UsageError.exit_code, err
    assert not out.exists() and not list(tmp_path.glob(".artifact.partial-*"))


def test_a_signed_artifact_stays_signed_through_pack_and_unpack(
    signed, keys, tmp_path, monkeypatch, capsys
) -> None:
    pack = tmp_path / "signed.bertcpack"
    assert cli(monkeypatch, capsys, "pack", signed, "--out", pack)[0] == 0
    restored = tmp_path / "restored"
    code, _, err = cli(monkeypatch, capsys, "unpack", pack, "--out", restored)
    assert code == 0, err
    code, _, err = run_with_key(restored, keys["team"][1], monkeypatch, capsys)
    assert code == 0, err
