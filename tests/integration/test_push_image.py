"""`make push-image` as the README runs it, with stand-ins for the docker and aws commands (no
engine or AWS here) and ECR in moto's server: the repository is ensured in REGION, the login
names REGION (issue 11: it had no --region) and the repository's registry, and the image is
tagged and pushed as the URI the stack's WorkerImageUri takes."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import requests
from moto.server import ThreadedMotoServer

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("make") is None, reason="needs make"),
]
ROOT = Path(__file__).resolve().parents[2]
STAND_IN = """#!/bin/sh
echo "$(basename "$0") $*" >> "{log}"
[ "$(basename "$0")" = aws ] && echo not-a-password
[ "$1" = login ] && cat > /dev/null  # docker login reads the password from stdin
exit 0
"""


@pytest.fixture
def endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    requests.post(f"{url}/moto-api/reset", timeout=10).raise_for_status()
    try:
        yield url
    finally:
        server.stop()


def test_push_image_ensures_the_repository_and_pushes_to_it_in_the_region(
    endpoint: str, tmp_path: Path
) -> None:
    log = tmp_path / "calls.log"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("docker", "aws"):
        stand_in = bin_dir / name
        stand_in.write_text(STAND_IN.format(log=log))
        stand_in.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    for name in ("AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_SESSION_TOKEN", "ECR_REPO"):
        env.pop(name, None)
    # -o: the virtual environment counts as installed (the suite runs inside it).
    done = subprocess.run(
        ["make", "-s", "-o", ".venv/.installed", "push-image", "IMAGE_TAG=abc1234"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    ecr = boto3.client(
        "ecr",
        region_name="sa-east-1",
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    (repository,) = ecr.describe_repositories()["repositories"]
    uri = repository["repositoryUri"]
    assert repository["repositoryName"] == "nfse-worker"
    assert repository["imageTagMutability"] == "IMMUTABLE"
    calls = log.read_text().splitlines()
    assert calls[0].startswith("docker build --platform linux/arm64")
    assert "aws ecr get-login-password --region sa-east-1" in calls
    registry = uri.split("/")[0]
    assert f"docker login --username AWS --password-stdin {registry}" in calls
    assert f"docker tag nfse-worker:abc1234 {uri}:abc1234" in calls
    assert calls[-1] == f"docker push {uri}:abc1234"
    assert f"WorkerImageUri={uri}:abc1234" in done.stdout.splitlines()
