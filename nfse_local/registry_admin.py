"""The deployed provider registry: `admin put-providers` and `admin providers`.

    python -m nfse_local admin put-providers docs/providers.example.json \\
        --stack nfse-dev
    python -m nfse_local admin providers --stack nfse-dev

put-providers validates the file with the registry's own code (the overlay rules of
nfse_core/providers/registry.py: IBGE codes, known profiles, https on port 443, bounded
timeouts) and refuses an invalid one before anything is written. A valid one is stored as
config/providers.json in the documents bucket with the stack's KMS key; the worker and
ProcessorFn read it within PROVIDERS_CACHE_SECONDS (300 s), no rebuild, no redeploy. The file
holds `schema_version` 1, `municipios` (and optional `profiles`); each municipality replaces
the shipped entry of the same code.

providers prints the registry in effect (shipped data with the stored overlay over it): one
line per municipality, its name, profile source, and the host it calls in each environment.

The bucket and key come from the stack's outputs (DocsBucketName, KmsKeyArn) or from --bucket
(and --kms-key-id). boto3's default session: real AWS, or the local stack's moto with
AWS_ENDPOINT_URL.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3

from nfse_core.providers.registry import (
    ProviderConfig,
    RegistryData,
    RegistryError,
    load_default_data,
    parse_overlay_text,
)
from nfse_core.providers.registry_source import DEFAULT_OBJECT_KEY, S3RegistryObject
from nfse_core.providers.shipped import shipped_data
from nfse_core.store.documents import DocumentStore


class RegistryAdminError(RuntimeError):
    """The command cannot run as asked (invalid file, no bucket)."""


@dataclass(frozen=True, slots=True)
class RegistryTarget:
    bucket: str
    kms_key_id: str = ""
    key: str = DEFAULT_OBJECT_KEY


def target_from(
    outputs: Mapping[str, str] | None, bucket: str | None, kms_key_id: str | None
) -> RegistryTarget:
    if bucket:
        return RegistryTarget(bucket, kms_key_id or "")
    outputs = outputs or {}
    if not outputs.get("DocsBucketName"):
        raise RegistryAdminError("give --stack (its DocsBucketName output) or --bucket")
    return RegistryTarget(outputs["DocsBucketName"], kms_key_id or outputs.get("KmsKeyArn", ""))


def validate_file(path: Path) -> tuple[bytes, RegistryData]:
    """The file's bytes and the registry they make; RegistryAdminError names what is wrong."""
    try:
        body = path.read_bytes()
    except OSError as exc:
        raise RegistryAdminError(f"{path}: {exc.strerror or exc}") from exc
    try:
        return body, parse_overlay_text(body)
    except RegistryError as exc:
        raise RegistryAdminError(f"{path} is not a valid provider registry: {exc}") from exc


def put_providers(path: Path, target: RegistryTarget, s3: Any | None = None) -> dict[str, Any]:
    """Validate, then store (SSE-KMS with the stack's key, as every document)."""
    body, (municipios, _) = validate_file(path)
    overlay = json.loads(body)
    client = s3 if s3 is not None else boto3.client("s3")
    DocumentStore(client, target.bucket, target.kms_key_id).put(
        target.key, body, "application/json"
    )
    return {
        "bucket": target.bucket,
        "key": target.key,
        "municipios": sorted(overlay["municipios"]),
        "effective": len(municipios),
    }


def effective_providers(target: RegistryTarget, s3: Any | None = None) -> list[dict[str, Any]]:
    """The registry in effect: the shipped one, with the stored overlay (if any) over it."""
    client = s3 if s3 is not None else boto3.client("s3")
    stored = S3RegistryObject(client, target.bucket, target.key).read()
    entries: dict[str, tuple[str, Mapping[str, Any]]] = {
        code: ("shipped", entry) for code, entry in shipped_data()["municipios"].items()
    }
    if stored is None:
        municipios, _ = load_default_data()
    else:
        try:
            municipios, _ = parse_overlay_text(stored)
        except RegistryError as exc:
            raise RegistryAdminError(
                f"s3://{target.bucket}/{target.key} is invalid (the platform keeps its last good"
                f" registry): {exc}"
            ) from exc
        entries |= {
            code: ("overlay", entry) for code, entry in json.loads(stored)["municipios"].items()
        }
    return [_row(code, config, *entries[code]) for code, config in sorted(municipios.items())]


def _row(
    code: str, config: ProviderConfig, source: str, entry: Mapping[str, Any]
) -> dict[str, Any]:
    return {
        "municipio": code,
        "name": config.name,
        "profile": str(entry.get("profile") or "-"),
        "source": source,
        "example": config.example,
        "signature": f"{config.signature_algorithm}/{config.digest_algorithm}",
        "family": config.family,
        "soap": config.dialect.soap_version,
        "producao": urlsplit(config.endpoints.producao).hostname,
        "homologacao": urlsplit(config.endpoints.homologacao).hostname
        if config.endpoints.homologacao
        else "-",
    }


def add_commands(commands: Any) -> None:
    put = commands.add_parser(
        "put-providers",
        help="validate a provider registry file and store it as the stack's registry",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    put.add_argument("file", type=Path, help="the registry file (JSON)")
    show = commands.add_parser(
        "providers",
        help="print the provider registry in effect",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for parser in (put, show):
        where = parser.add_mutually_exclusive_group(required=True)
        where.add_argument("--stack", default=None, help="the platform's CloudFormation stack")
        where.add_argument("--bucket", default=None, help="the documents bucket")
        parser.add_argument(
            "--kms-key-id", default=None, help="KMS key for SSE-KMS (default: the stack's)"
        )


def run(args: Any, outputs: Mapping[str, str] | None) -> tuple[int, str]:
    """(exit code, text to print) of put-providers / providers."""
    target = target_from(outputs, args.bucket, args.kms_key_id)
    if args.admin_command == "put-providers":
        return 0, json.dumps(put_providers(args.file, target))
    rows = effective_providers(target)
    lines = [
        f"{r['municipio']}  {r['name']}  ({r['source']}{', example' if r['example'] else ''})"
        f"  family={r['family']} profile={r['profile']} {r['signature']} SOAP {r['soap']}"
        f"  producao={r['producao']} homologacao={r['homologacao']}"
        for r in rows
    ]
    return 0, "\n".join(lines)
