"""The real worker process (`python -m adapters_service`, the image's entrypoint) as the image's
unprivileged user, with only the task's volume writable: it issues an invoice and writes nothing
anywhere else; and with the volume as Fargate makes it without the image's VOLUME (root-owned,
0755) it exits at once with one clear line.

Dynamic, beside the static tests/unit/test_container_contract.py: that one knows the paths the
worker is meant to write; this one finds what it really writes, library code included. The
machine stands in for the container: the process runs as uid 10001 (the Dockerfile's USER) with
the image's ENV and the task's environment, the volume's path (/scratch) mapped to a directory
owned by 10001 with mode 0700; the repository, the virtual environment and the rest of the disk
belong to root, so, as under the task's read-only root, the user can write only in world-writable
places (/tmp, /var/tmp, /dev/shm): afterwards `find -uid 10001` over them (and the whole root
filesystem) must show files inside the volume only. The process keeps CAP_DAC_READ_SEARCH, read
and directory search only, because the interpreter lives under /root (mode 0700) here; it grants
no write. A file created and removed within the run (tempfile's) is not seen by find: TMPDIR's
place is the static test's job.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import boto3
import pytest
import requests
from moto.server import ThreadedMotoServer

from nfse_core.store.ledger import Ledger
from nfse_local.certs import write_a1_certificate
from nfse_local.cfn import load_template
from nfse_local.resources import LocalResources, create_resources
from nfse_local.simulator import ProviderSimulator
from tests.integration.conftest import CERT_PASSWORD, status_of, store_emitted_invoice, wait_for
from tests.unit.test_container_contract import DOCKERFILE, TEMPLATE, parse_image, parse_task

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("setpriv") is None,
        reason="runs the worker as another uid: needs root and util-linux's setpriv",
    ),
]

ROOT = Path(__file__).resolve().parents[2]
WORKER_UID = 10001
CNPJ = "11222333000181"
# Where an unprivileged user can write on this machine outside its own directories.
SHARED_WRITABLE = ("/tmp", "/var/tmp", "/dev/shm")


def image_user() -> int:
    user = parse_image(DOCKERFILE.read_text(encoding="utf-8")).user
    assert user is not None and user.isdigit()
    return int(user)


def volume_path() -> str:
    (mount,) = parse_task(load_template(TEMPLATE)).mounts
    path: str = mount["ContainerPath"]
    return path


@dataclass
class Stack:
    resources: LocalResources
    endpoint: str
    simulator: ProviderSimulator
    cert_dir: Path
    ledger_url: str

    def session(self) -> boto3.session.Session:
        return boto3.session.Session(region_name="us-east-1")


@pytest.fixture
def stack(
    monkeypatch: pytest.MonkeyPatch, ledger: Ledger, ledger_url: str, tmp_path: Path
) -> Iterator[Stack]:
    """moto's server on loopback with template.yaml's resources, the simulator, the ledger."""
    del ledger  # requested for its clean table
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    # moto's backends outlive a server in the same process: start from an empty account.
    requests.post(f"{endpoint}/moto-api/reset", timeout=10).raise_for_status()
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    cert_dir = tmp_path / "certs"
    cert_dir.mkdir()
    write_a1_certificate(cert_dir, CNPJ, CERT_PASSWORD)
    try:
        resources = create_resources(
            boto3.session.Session(region_name="us-east-1"),
            template_path=TEMPLATE,
            endpoint_url=endpoint,
        )
        with ProviderSimulator() as simulator:
            yield Stack(resources, endpoint, simulator, cert_dir, ledger_url)
    finally:
        server.stop()


@pytest.fixture
def volume() -> Iterator[Path]:
    """A directory standing for the task's volume; its owner and mode are each test's."""
    parent = Path(tempfile.mkdtemp(prefix="nfse-volume-"))
    parent.chmod(0o755)
    try:
        yield parent / "scratch"
    finally:
        shutil.rmtree(parent)


def queued_invoice(stack: Stack) -> str:
    """An EMITTED invoice, its XML and its request message, as EmitFn leaves them."""
    session, resources = stack.session(), stack.resources
    invoice_id = store_emitted_invoice(
        session.client("s3"), session.client("dynamodb"), resources, CNPJ
    )
    session.client("sqs").send_message(
        QueueUrl=resources.requests_queue_url, MessageBody=json.dumps({"invoiceId": invoice_id})
    )
    return invoice_id


def container_env(stack: Stack, volume: Path) -> dict[str, str]:
    """The image's ENV and the task's environment, the volume's path mapped to `volume`; the
    local parts (moto, the simulator, certificate files, PostgreSQL) as the other worker tests
    have them. HOME is where the image's user has none (useradd --no-create-home)."""
    mount = volume_path()

    def mapped(value: str) -> str:
        if PurePosixPath(value).is_relative_to(mount):
            return str(volume / PurePosixPath(value).relative_to(mount))
        return value

    image_env = parse_image(DOCKERFILE.read_text(encoding="utf-8")).env
    env = {
        name: mapped(value) for name, value in (image_env | stack.resources.worker_env()).items()
    }
    return env | {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": "/nonexistent",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": stack.endpoint,
        "POWERTOOLS_TRACE_DISABLED": "true",
        "PROVIDER_ENDPOINT_OVERRIDE": stack.simulator.url,
        "CERT_SOURCE": "file",
        "CERT_DIR": str(stack.cert_dir),
        "DATABASE_URL": stack.ledger_url,
        "WORKER_WAIT_SECONDS": "1",
        "VISIBILITY_TIMEOUT": "30",
        "WORKER_CONCURRENCY": "2",
    }


def start_worker(env: dict[str, str], output: Path) -> subprocess.Popen[bytes]:
    """`python -m adapters_service` as the image's user (uid and gid, no groups)."""
    uid = image_user()
    argv = [
        "setpriv",
        f"--reuid={uid}",
        f"--regid={uid}",
        "--clear-groups",
        # Read and search only (the interpreter is under /root here): no write is granted.
        "--inh-caps=-all,+dac_read_search",
        "--ambient-caps=-all,+dac_read_search",
        "--bounding-set=-all,+dac_read_search",
        sys.executable,
        "-m",
        "adapters_service",
    ]
    with output.open("wb") as sink:
        return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT)


def created_by(uid: int, newer_than: Path) -> list[str]:
    """Files and directories owned by `uid` changed since `newer_than` was: on the root
    filesystem, and in the shared writable places whatever their filesystem."""
    roots = ["/", *(p for p in SHARED_WRITABLE if Path(p).is_dir())]
    found = subprocess.run(
        ["find", *roots, "-xdev", "-uid", str(uid), "-newer", str(newer_than)],
        capture_output=True,
        text=True,
        check=False,
    )
    return sorted(set(found.stdout.split()))


def test_the_worker_writes_only_in_its_volume(stack: Stack, volume: Path, tmp_path: Path) -> None:
    uid = image_user()
    volume.mkdir(mode=0o700)
    os.chown(volume, uid, uid)
    env = container_env(stack, volume)
    assert Path(env["TMPDIR"]) == volume
    heartbeat = Path(env["WORKER_HEARTBEAT_FILE"])
    assert heartbeat.parent == volume
    # The code the user runs is not its own to write (as in the image): root's, not o+w.
    for code in (ROOT, ROOT / "adapters_service", Path(sys.prefix)):
        assert (code.stat().st_uid, code.stat().st_mode & 0o002) == (0, 0), code
    marker = tmp_path / "marker"
    marker.touch()
    time.sleep(0.01)  # a file created from now on is newer than the marker
    invoice_id = queued_invoice(stack)
    output = tmp_path / "worker.log"
    worker = start_worker(env, output)
    try:
        table = stack.resources.invoices_table
        wait_for(
            lambda: (
                status_of(stack.session(), table, invoice_id)["status"]["S"] == "ISSUED"
                or worker.poll() is not None
            ),
            timeout=60,
            what="the invoice ISSUED",
        )
        assert worker.poll() is None, output.read_text()
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0, output.read_text()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert status_of(stack.session(), table, invoice_id)["status"]["S"] == "ISSUED"
    assert stack.simulator.stats()["issued"] == 1
    assert heartbeat.is_file() and heartbeat.stat().st_uid == uid
    written = created_by(uid, marker)
    outside = [p for p in written if not PurePosixPath(p).is_relative_to(volume)]
    assert outside == [], f"the worker wrote outside its volume: {outside}"
    assert str(heartbeat) in written


def test_a_root_owned_volume_stops_the_worker_with_one_clear_line(
    stack: Stack, volume: Path, tmp_path: Path
) -> None:
    """What Fargate mounts when the image declares no VOLUME there (the old failure: a
    PermissionError traceback at the first heartbeat, the task gone, the stack rolled back)."""
    volume.mkdir(mode=0o755)  # root's, as the bind mount would be
    output = tmp_path / "worker.log"
    worker = start_worker(container_env(stack, volume), output)
    try:
        code = worker.wait(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    text = output.read_text()
    assert code == 73, text
    (line,) = [line for line in text.splitlines() if line.strip()]
    record = json.loads(line)
    assert record["level"] == "CRITICAL"
    assert record["message"].startswith(f"worker cannot start: {volume}: Permission denied")
    assert "Traceback" not in text
    assert list(volume.iterdir()) == []
