"""C2PA content credentials for generated audio (WAV, MP3, FLAC, M4A): sign, read and verify.

A manifest says the file was created by a trained model (``c2pa.created`` with IPTC
``digitalSourceType`` ``trainedAlgorithmicMedia``, or ``compositeWithTrainedAlgorithmicMedia``
when only part of it is AI), names the dataset manifest it came from as an ingredient (by its
SHA-256), carries a ``cawg.training-mining`` assertion (may the file be used to train AI?),
and Attune's own ``dev.attune.generation`` assertion (output id, model, AI credits).

Signing uses an ES256 certificate chain made locally at first use (a CA and a leaf signed by
it, with ``cryptography``) and stored in the key directory (``ATTUNE_C2PA_KEY_DIR``, default
``~/.attune/c2pa``); nothing is downloaded and no timestamp server is contacted.  Reading trusts
that local CA, so a file signed here validates as ``Trusted``; a file whose audio or manifest
changed after signing is ``Invalid`` with a message saying what changed.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import c2pa as c2pa_sdk
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from attune import __version__
from attune.provenance.credits import ContainsAI, ReleaseCredits, to_json

__all__ = [
    "DIGITAL_SOURCE_TYPES",
    "MIME_TYPES",
    "ContentCredentialsError",
    "Generation",
    "ManifestReport",
    "SigningIdentity",
    "default_key_dir",
    "ensure_identity",
    "read_manifest",
    "sign_file",
]

TrainingUse = Literal["allowed", "notAllowed", "constrained"]
IPTC: Final[str] = "http://cv.iptc.org/newscodes/digitalsourcetype/"
DIGITAL_SOURCE_TYPES: Final[dict[str, str]] = {
    "All": IPTC + "trainedAlgorithmicMedia",
    "Partly": IPTC + "compositeWithTrainedAlgorithmicMedia",
    "None": IPTC + "digitalCreation",
    "Undeclared": IPTC + "trainedAlgorithmicMedia",
}
MIME_TYPES: Final[dict[str, str]] = {
    ".wav": "audio/wav",
    ".mp3": "audio/mpeg",
    ".flac": "audio/flac",
    ".m4a": "audio/mp4",
}
TRAINING_ENTRIES: Final[tuple[str, ...]] = (
    "cawg.ai_generative_training",
    "cawg.ai_training",
    "cawg.ai_inference",
    "cawg.data_mining",
)
GENERATION_LABEL: Final[str] = "dev.attune.generation"
_SHA256: Final[re.Pattern[str]] = re.compile(r"[0-9a-f]{64}")
_PROBLEMS: Final[dict[str, str]] = {
    "assertion.dataHash.mismatch": "the audio was changed after signing (data hash mismatch)",
    "assertion.bmffHash.mismatch": "the audio was changed after signing (BMFF hash mismatch)",
    "claimSignature.mismatch": "the manifest was changed after signing (signature mismatch)",
    "assertion.hashedURI.mismatch": "an assertion was changed after signing (hash mismatch)",
    "signingCredential.untrusted": "signed with a certificate this key directory does not trust",
    "signingCredential.expired": "the signing certificate has expired",
}


class ContentCredentialsError(ValueError):
    """A file that cannot be signed or read; the message names the file and the cause."""


@dataclass(frozen=True, slots=True)
class SigningIdentity:
    """The local signing chain: CA certificate, leaf + CA chain and the leaf's private key."""

    directory: Path
    ca_pem: bytes
    chain_pem: bytes
    key_pem: bytes


@dataclass(frozen=True, slots=True)
class Generation:
    """What to state about a generated output.

    ``contains_ai`` picks the IPTC digital source type; ``dataset_sha256`` (64 hex digits) is
    the hash of the dataset manifest the model was trained on, when it came from a governed
    model; ``training`` is the answer of every ``cawg.training-mining`` entry.
    """

    title: str
    output_id: int | None = None
    model: str | None = None
    dataset_sha256: str | None = None
    contains_ai: ContainsAI = "All"
    training: TrainingUse = "notAllowed"
    credits: ReleaseCredits | None = None


@dataclass(frozen=True, slots=True)
class ManifestReport:
    """A file's validated manifest: state (Trusted/Valid/Invalid), problems, and the manifest.

    ``ok`` is True when the state is Trusted or Valid and nothing was changed after signing.
    """

    path: str
    state: str
    problems: tuple[str, ...]
    manifest: dict[str, Any]

    @property
    def ok(self) -> bool:
        """True when the file validates: signature and hashes match."""
        return self.state in ("Trusted", "Valid")

    def assertion(self, label: str) -> dict[str, Any] | None:
        """The data of the active manifest's assertion ``label`` (None if absent)."""
        for item in self.manifest.get("assertions", []):
            if item.get("label") == label:
                data = item.get("data")
                return data if isinstance(data, dict) else None
        return None


def default_key_dir() -> Path:
    """``ATTUNE_C2PA_KEY_DIR`` if set, else ``~/.attune/c2pa``."""
    return Path(os.environ.get("ATTUNE_C2PA_KEY_DIR", "~/.attune/c2pa")).expanduser()


def ensure_identity(key_dir: Path | None = None) -> SigningIdentity:
    """Load the local ES256 CA and signing certificate, creating them at first use."""
    directory = key_dir or default_key_dir()
    files = {n: directory / n for n in ("ca.pem", "signer-chain.pem", "signer.key")}
    if not all(p.exists() for p in files.values()):
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        ca_pem, chain_pem, key_pem = _new_chain()
        for name, content in (
            ("signer.key", key_pem),
            ("signer-chain.pem", chain_pem),
            ("ca.pem", ca_pem),
        ):
            fd, tmp = tempfile.mkstemp(dir=directory)
            with os.fdopen(fd, "wb") as handle:
                handle.write(content)
            os.chmod(tmp, 0o600 if name.endswith(".key") else 0o644)
            os.replace(tmp, files[name])
    return SigningIdentity(
        directory=directory,
        ca_pem=files["ca.pem"].read_bytes(),
        chain_pem=files["signer-chain.pem"].read_bytes(),
        key_pem=files["signer.key"].read_bytes(),
    )


def _new_chain() -> tuple[bytes, bytes, bytes]:
    """A fresh P-256 CA (10 years) and a leaf for C2PA signing (2 years): PEM CA, chain, key."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "Attune local C2PA CA"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Attune"),
        ]
    )
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.COMMON_NAME, "Attune content credentials"),
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Attune"),
                ]
            )
        )
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=730))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return ca.public_bytes(pem), leaf.public_bytes(pem) + ca.public_bytes(pem), key_pem


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    """Key usage of a CA (certificate and CRL signing) or of a signing leaf."""
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _mime(path: Path) -> str:
    """The C2PA MIME type of an audio file, from its suffix."""
    try:
        return MIME_TYPES[path.suffix.lower()]
    except KeyError:
        known = ", ".join(MIME_TYPES)
        raise ContentCredentialsError(
            f"{path}: cannot hold content credentials ({path.suffix or 'no suffix'}; use {known})"
        ) from None


def manifest_definition(generation: Generation, mime: str) -> dict[str, Any]:
    """The manifest to sign: created action, dataset ingredient, training-mining, generation."""
    if generation.dataset_sha256 is not None and not _SHA256.fullmatch(generation.dataset_sha256):
        raise ContentCredentialsError(
            f"dataset_sha256 must be 64 lower-case hex digits, not {generation.dataset_sha256!r}"
        )
    agent = {"name": generation.model or "Attune", "version": __version__}
    facts: dict[str, Any] = {"output_id": generation.output_id, "model": generation.model}
    assertions: list[dict[str, Any]] = [
        {
            "label": "c2pa.actions.v2",
            "data": {
                "actions": [
                    {
                        "action": "c2pa.created",
                        "digitalSourceType": DIGITAL_SOURCE_TYPES[generation.contains_ai],
                        "softwareAgent": agent,
                    }
                ]
            },
        },
        {
            "label": "cawg.training-mining",
            "data": {"entries": {e: {"use": generation.training} for e in TRAINING_ENTRIES}},
        },
        {"label": GENERATION_LABEL, "data": facts},
    ]
    ingredients = []
    if generation.dataset_sha256 is not None:
        facts["dataset_manifest_sha256"] = generation.dataset_sha256
        ingredients.append(
            {
                "title": f"Dataset manifest sha256:{generation.dataset_sha256}",
                "format": "application/json",
                "relationship": "inputTo",
                "instance_id": f"urn:attune:dataset-manifest:sha256:{generation.dataset_sha256}",
            }
        )
    if generation.credits is not None:
        facts["ai_credits"] = json.loads(to_json(generation.credits))
    return {
        "claim_generator_info": [{"name": "Attune", "version": __version__}],
        "title": generation.title,
        "format": mime,
        "ingredients": ingredients,
        "assertions": assertions,
    }


def sign_file(
    source: str | Path,
    target: str | Path,
    generation: Generation,
    *,
    key_dir: Path | None = None,
) -> ManifestReport:
    """Embed a signed manifest for ``generation`` in a copy of ``source`` written to ``target``.

    ``target`` may equal ``source`` (the file is replaced only once signing succeeded).
    """
    src, dst = Path(source), Path(target)
    mime = _mime(src)
    if _mime(dst) != mime:
        raise ContentCredentialsError(f"{dst}: must have the same format as {src}")
    identity = ensure_identity(key_dir)
    definition = manifest_definition(generation, mime)
    info = c2pa_sdk.C2paSignerInfo(
        alg=c2pa_sdk.C2paSigningAlg.ES256,
        sign_cert=identity.chain_pem,
        private_key=identity.key_pem,
        ta_url=None,
    )
    fd, tmp = tempfile.mkstemp(dir=dst.parent, suffix=dst.suffix)
    os.close(fd)
    try:
        signer = c2pa_sdk.Signer.from_info(info)
        builder = c2pa_sdk.Builder(json.dumps(definition))
        try:
            with open(src, "rb") as reader, open(tmp, "w+b") as writer:
                builder.sign(signer, mime, reader, writer)
        finally:
            builder.close()
            signer.close()
        shutil.move(tmp, dst)
    except c2pa_sdk.C2paError as exc:
        raise ContentCredentialsError(f"{src}: signing failed: {exc}") from None
    except OSError as exc:
        raise ContentCredentialsError(f"{src}: cannot sign: {exc}") from None
    finally:
        Path(tmp).unlink(missing_ok=True)
    return read_manifest(dst, key_dir=identity.directory)


def read_manifest(path: str | Path, *, key_dir: Path | None = None) -> ManifestReport:
    """Read and validate the manifest embedded in ``path``, trusting the local CA."""
    file = Path(path)
    mime = _mime(file)
    identity = ensure_identity(key_dir)
    settings = c2pa_sdk.Settings.from_dict({"trust": {"trust_anchors": identity.ca_pem.decode()}})
    context = c2pa_sdk.Context(settings)
    try:
        with open(file, "rb") as stream:
            reader = c2pa_sdk.Reader(mime, stream, context=context)
            try:
                store = json.loads(reader.json())
            finally:
                reader.close()
    except OSError as exc:
        raise ContentCredentialsError(f"{file}: cannot read: {exc}") from None
    except c2pa_sdk.C2paError as exc:
        if "ManifestNotFound" in type(exc).__name__ or "no JUMBF" in str(exc):
            raise ContentCredentialsError(f"{file}: has no C2PA manifest") from None
        raise ContentCredentialsError(f"{file}: unreadable C2PA manifest: {exc}") from None
    finally:
        context.close()
        settings.close()
    active = store.get("manifests", {}).get(store.get("active_manifest", ""), {})
    codes = [s.get("code", "") for s in store.get("validation_status") or []]
    problems = tuple(_PROBLEMS.get(code, code) for code in codes)
    state = str(store.get("validation_state", "Invalid" if codes else "Valid"))
    return ManifestReport(path=str(file), state=state, problems=problems, manifest=active)
