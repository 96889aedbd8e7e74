"""The worker image's ECR repository: `python -m nfse_local admin ensure-repository`.

    python -m nfse_local admin ensure-repository --region sa-east-1 [--name nfse-worker]

Creates the repository when it is missing and brings an existing one to the same settings; it
can be run again at any time. Prints the repository URI (what `make push-image` tags and pushes
to; the stack's WorkerImageUri is that URI and the pushed tag). The settings:

- tags are IMMUTABLE: a deployed tag always names the image that was deployed (push a new tag,
  the commit's, for a new image);
- images are scanned on push (basic scanning);
- encrypted at rest with AES-256, or with a KMS key (--kms-key; the AWS-managed key for ECR
  with --kms-key aws/ecr). ECR cannot change a repository's encryption: a repository created
  otherwise is reported, not recreated;
- a lifecycle policy keeps the last --keep images (default 20) and expires untagged ones after
  a day. Keep more than the images a rollback may need: the running task's image must stay.

boto3's default session (profile, SSO, role); with AWS_ENDPOINT_URL set, the local moto.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

DEFAULT_NAME = "nfse-worker"
DEFAULT_REGION = "sa-east-1"  # Brazilian taxpayer data stays in Brazil (LGPD)
DEFAULT_KEEP = 20
UNTAGGED_DAYS = 1


class RepositoryError(RuntimeError):
    """The repository cannot be brought to the asked settings."""


@dataclass(frozen=True, slots=True)
class Repository:
    uri: str
    arn: str
    created: bool
    # Settings ECR cannot change on an existing repository, when they differ from the asked.
    warnings: tuple[str, ...] = ()


def lifecycle_policy(keep: int) -> dict[str, Any]:
    """Untagged images go after UNTAGGED_DAYS; of the rest, the newest `keep` stay."""
    if keep < 1:
        raise RepositoryError("--keep must be at least 1")
    return {
        "rules": [
            {
                "rulePriority": 1,
                "description": f"untagged images after {UNTAGGED_DAYS} day(s)",
                "selection": {
                    "tagStatus": "untagged",
                    "countType": "sinceImagePushed",
                    "countUnit": "days",
                    "countNumber": UNTAGGED_DAYS,
                },
                "action": {"type": "expire"},
            },
            {
                # ECR wants the "any" rule last (the highest rulePriority).
                "rulePriority": 2,
                "description": f"keep the last {keep} images",
                "selection": {
                    "tagStatus": "any",
                    "countType": "imageCountMoreThan",
                    "countNumber": keep,
                },
                "action": {"type": "expire"},
            },
        ]
    }


def _encryption(kms_key: str | None) -> dict[str, str]:
    if kms_key is None:
        return {"encryptionType": "AES256"}
    if kms_key == "aws/ecr":
        return {"encryptionType": "KMS"}  # the AWS-managed key
    return {"encryptionType": "KMS", "kmsKey": kms_key}


def _existing(ecr: Any, name: str) -> dict[str, Any] | None:
    try:
        (repository,) = ecr.describe_repositories(repositoryNames=[name])["repositories"]
    except ecr.exceptions.RepositoryNotFoundException:
        return None
    found: dict[str, Any] = repository
    return found


def ensure_repository(
    ecr: Any, name: str = DEFAULT_NAME, *, keep: int = DEFAULT_KEEP, kms_key: str | None = None
) -> Repository:
    """The repository `name` with the module's settings, created if missing (idempotent)."""
    policy = json.dumps(lifecycle_policy(keep))
    wanted = _encryption(kms_key)
    existing = _existing(ecr, name)
    warnings: list[str] = []
    if existing is None:
        try:
            existing = ecr.create_repository(
                repositoryName=name,
                imageTagMutability="IMMUTABLE",
                imageScanningConfiguration={"scanOnPush": True},
                encryptionConfiguration=wanted,
            )["repository"]
        except ecr.exceptions.RepositoryAlreadyExistsException:  # created meanwhile
            existing = _existing(ecr, name)
        created = True
    else:
        created = False
        ecr.put_image_tag_mutability(repositoryName=name, imageTagMutability="IMMUTABLE")
        ecr.put_image_scanning_configuration(
            repositoryName=name, imageScanningConfiguration={"scanOnPush": True}
        )
        have = existing.get("encryptionConfiguration") or {"encryptionType": "AES256"}
        if have.get("encryptionType") != wanted["encryptionType"] or (
            "kmsKey" in wanted and have.get("kmsKey") != wanted["kmsKey"]
        ):
            warnings.append(
                f"{name} is encrypted with {have}, not {wanted}: ECR cannot change a"
                " repository's encryption (delete and recreate it to change it)"
            )
    if existing is None:
        raise RepositoryError(f"repository {name} was neither found nor created")
    ecr.put_lifecycle_policy(repositoryName=name, lifecyclePolicyText=policy)
    return Repository(
        uri=existing["repositoryUri"],
        arn=existing["repositoryArn"],
        created=created,
        warnings=tuple(warnings),
    )


def add_commands(commands: Any) -> None:
    """`ensure-repository` on the admin command's subparsers."""
    ensure = commands.add_parser(
        "ensure-repository",
        help="create (or bring up to date) the worker image's ECR repository; prints its URI",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ensure.add_argument(
        "--region", default=DEFAULT_REGION, help=f"AWS region (default {DEFAULT_REGION})"
    )
    ensure.add_argument(
        "--name", default=DEFAULT_NAME, help=f"repository name (default {DEFAULT_NAME})"
    )
    ensure.add_argument(
        "--keep", type=int, default=DEFAULT_KEEP, help=f"images kept (default {DEFAULT_KEEP})"
    )
    ensure.add_argument(
        "--kms-key",
        default=None,
        help="KMS key id/ARN, or aws/ecr for ECR's AWS-managed key (default: AES-256)",
    )


def run(args: argparse.Namespace, ecr: Any | None = None) -> int:
    client = ecr if ecr is not None else boto3.client("ecr", region_name=args.region)
    try:
        repository = ensure_repository(client, args.name, keep=args.keep, kms_key=args.kms_key)
    except RepositoryError as error:
        print(f"admin: {error}", file=sys.stderr)
        return 2
    except (ClientError, BotoCoreError) as error:  # credentials, permissions, region
        print(f"admin: ECR in {args.region}: {error}", file=sys.stderr)
        return 1
    for warning in repository.warnings:
        print(f"admin: {warning}", file=sys.stderr)
    print(
        f"admin: {'created' if repository.created else 'up to date'}: {repository.arn}",
        file=sys.stderr,
    )
    print(repository.uri)
    return 0
