"""A certificate is checked before use: an expired one, or one of another company, is refused
with a clear error and a log line the template's metric filter counts (no socket here)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from nfse_core.providers.certificates import (
    CERTIFICATE_REFUSED_LOG,
    CertificateExpired,
    CertificateOfAnotherCompany,
    FileCertificateStore,
    certificate_cnpjs,
)
from nfse_local.certs import (
    generate_key_and_certificate,
    to_pfx,
    write_a1_certificate,
)
from nfse_local.cfn import load_template

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
CNPJ = "11222333000181"
OTHER = "11444777000161"
PASSWORD = "test-only"


def store(tmp_path: Path, when: datetime | None = None) -> FileCertificateStore:
    return FileCertificateStore(tmp_path, wall_clock=lambda: when or datetime.now(UTC))


def test_a_valid_certificate_of_the_company_is_used(tmp_path: Path) -> None:
    write_a1_certificate(tmp_path, CNPJ, PASSWORD)
    assert store(tmp_path).get(CNPJ).cert is not None


def test_the_cnpj_is_read_from_the_icp_brasil_other_name_and_the_cn() -> None:
    _, cert = generate_key_and_certificate(CNPJ)
    assert certificate_cnpjs(cert) == {CNPJ}
    alphanumeric = "12ABC34501DE35"
    _, cert = generate_key_and_certificate(alphanumeric)
    assert certificate_cnpjs(cert) == {alphanumeric}


def test_an_expired_certificate_is_refused_with_its_date(tmp_path: Path) -> None:
    """Defect: an expired certificate was used as is; the provider refused the signature
    (or the handshake) and the error said nothing of the reason."""
    write_a1_certificate(tmp_path, CNPJ, PASSWORD)
    later = datetime.now(UTC) + timedelta(days=400)
    with pytest.raises(CertificateExpired) as caught:
        store(tmp_path, later).get(CNPJ)
    assert "expired on" in str(caught.value) and caught.value.code == "CERTIFICATE_EXPIRED"


def test_a_not_yet_valid_certificate_is_refused(tmp_path: Path) -> None:
    write_a1_certificate(tmp_path, CNPJ, PASSWORD)
    with pytest.raises(CertificateExpired, match="valid only from"):
        store(tmp_path, datetime.now(UTC) - timedelta(days=2)).get(CNPJ)


def test_a_cached_certificate_is_checked_again_at_every_use(tmp_path: Path) -> None:
    write_a1_certificate(tmp_path, CNPJ, PASSWORD)
    moments = iter([datetime.now(UTC), datetime.now(UTC) + timedelta(days=400)])
    certificates = FileCertificateStore(
        tmp_path, ttl_seconds=3600, wall_clock=lambda: next(moments)
    )
    certificates.get(CNPJ)
    with pytest.raises(CertificateExpired):
        certificates.get(CNPJ)  # still cached, but expired meanwhile
    assert certificates.loads == 1


def test_the_certificate_of_another_company_is_refused(tmp_path: Path) -> None:
    """Defect: the file or secret of one company holding another's certificate went unnoticed:
    documents were signed for the wrong CNPJ."""
    (tmp_path / f"{CNPJ}.pfx").write_bytes(to_pfx(*generate_key_and_certificate(OTHER), PASSWORD))
    (tmp_path / f"{CNPJ}.password").write_text(PASSWORD)
    with pytest.raises(CertificateOfAnotherCompany) as caught:
        store(tmp_path).get(CNPJ)
    assert OTHER in str(caught.value) and caught.value.code == "CERTIFICATE_CNPJ_MISMATCH"


def test_a_certificate_naming_no_cnpj_is_refused(tmp_path: Path) -> None:
    key, _ = generate_key_and_certificate(CNPJ)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "EMPRESA SEM CNPJ")])
    now = datetime.now(UTC)
    bare = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    (tmp_path / f"{CNPJ}.pfx").write_bytes(to_pfx(key, bare, PASSWORD))
    (tmp_path / f"{CNPJ}.password").write_text(PASSWORD)
    with pytest.raises(CertificateOfAnotherCompany, match="names no CNPJ"):
        store(tmp_path).get(CNPJ)


@pytest.mark.parametrize("log_group", ["WorkerLogGroup", "ProcessorFnLogGroup"])
def test_refusals_are_counted_by_a_metric_filter_on_the_log_line(log_group: str) -> None:
    resources = load_template(ROOT / "template.yaml")["Resources"]
    filters = [
        r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::Logs::MetricFilter"
        and r["Properties"]["LogGroupName"] == {"Ref": log_group}
    ]
    (refusals,) = [f for f in filters if CERTIFICATE_REFUSED_LOG in f["FilterPattern"]]
    (transformation,) = refusals["MetricTransformations"]
    assert transformation["MetricName"] == "CertificatesRefused"
    assert yaml.safe_dump(refusals)  # a plain mapping the template can hold
