"""`admin ensure-repository` against moto's server on loopback: the worker image's repository is
created with immutable tags, scan on push, encryption and a lifecycle policy, its URI printed;
run again, it changes nothing and prints the same URI; an existing repository is brought to the
settings (issue 11: nothing created the repository `make push-image` pushed to)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import requests
from moto.server import ThreadedMotoServer

from nfse_local import admin
from nfse_local.ecr import DEFAULT_KEEP, lifecycle_policy

pytestmark = pytest.mark.integration
REGION = "sa-east-1"


@pytest.fixture
def ecr(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    requests.post(f"{endpoint}/moto-api/reset", timeout=10).raise_for_status()
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)  # --region has to carry it
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    try:
        yield boto3.client("ecr", region_name=REGION)
    finally:
        server.stop()


def ensure(capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, str]:
    code = admin.main(["ensure-repository", "--region", REGION, *extra])
    out, err = capsys.readouterr()
    return code, out.strip(), err


def described(ecr: Any, name: str = "nfse-worker") -> dict[str, Any]:
    (repository,) = ecr.describe_repositories(repositoryNames=[name])["repositories"]
    found: dict[str, Any] = repository
    return found


def test_creates_the_repository_with_its_settings_and_prints_its_uri(
    ecr: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    code, uri, err = ensure(capsys)
    assert code == 0, err
    repository = described(ecr)
    assert uri == repository["repositoryUri"]
    assert uri.endswith(f".dkr.ecr.{REGION}.amazonaws.com/nfse-worker")
    assert repository["imageTagMutability"] == "IMMUTABLE"
    assert repository["imageScanningConfiguration"] == {"scanOnPush": True}
    assert repository["encryptionConfiguration"]["encryptionType"] == "AES256"
    policy = json.loads(
        ecr.get_lifecycle_policy(repositoryName="nfse-worker")["lifecyclePolicyText"]
    )
    assert policy == lifecycle_policy(DEFAULT_KEEP)
    assert "created" in err


def test_running_it_again_changes_nothing_and_prints_the_same_uri(
    ecr: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    first = ensure(capsys, "--name", "worker-images", "--keep", "5")
    second = ensure(capsys, "--name", "worker-images", "--keep", "5")
    assert first[0] == second[0] == 0
    assert first[1] == second[1]
    assert "up to date" in second[2]
    assert len(ecr.describe_repositories()["repositories"]) == 1
    text = ecr.get_lifecycle_policy(repositoryName="worker-images")["lifecyclePolicyText"]
    assert json.loads(text) == lifecycle_policy(5)


def test_an_existing_repository_is_brought_to_the_settings(
    ecr: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    ecr.create_repository(
        repositoryName="nfse-worker",
        imageTagMutability="MUTABLE",
        imageScanningConfiguration={"scanOnPush": False},
    )
    code, uri, err = ensure(capsys)
    assert code == 0, err
    repository = described(ecr)
    assert repository["imageTagMutability"] == "IMMUTABLE"
    assert repository["imageScanningConfiguration"] == {"scanOnPush": True}
    assert ecr.get_lifecycle_policy(repositoryName="nfse-worker")["lifecyclePolicyText"]
    assert uri == repository["repositoryUri"]


def test_a_kms_key_is_used_and_a_different_encryption_is_reported_not_changed(
    ecr: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    key = boto3.client("kms", region_name=REGION).create_key()["KeyMetadata"]["Arn"]
    code, _, err = ensure(capsys, "--kms-key", key)
    assert code == 0, err
    assert described(ecr)["encryptionConfiguration"] == {"encryptionType": "KMS", "kmsKey": key}
    code, _, err = ensure(capsys)  # asks for AES256 now
    assert code == 0
    assert "cannot change a repository's encryption" in err
    assert described(ecr)["encryptionConfiguration"]["encryptionType"] == "KMS"


def test_the_lifecycle_policy_keeps_the_last_images_with_the_any_rule_last() -> None:
    rules = lifecycle_policy(7)["rules"]
    assert [r["selection"]["tagStatus"] for r in rules] == ["untagged", "any"]
    assert rules[-1]["rulePriority"] == max(r["rulePriority"] for r in rules)
    assert rules[-1]["selection"]["countNumber"] == 7
    assert rules[-1]["selection"]["countType"] == "imageCountMoreThan"
