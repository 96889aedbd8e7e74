"""Providers that authenticate the TLS connection with the prestador's A1 certificate.

The simulator serves HTTPS and demands a client certificate it trusts; the worker's provider
clients (nfse_core.providers.clients.ProviderClients) present the company's certificate from the
certificate store. Everything is generated here: the server certificate, the CA bundle that
trusts it, the companies' certificates (the session's cert_dir).
"""

from __future__ import annotations

import ssl
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from nfse_core.providers.certificates import CertificateNotFound, FileCertificateStore
from nfse_core.providers.clients import ProviderClients
from nfse_core.providers.port import Issued, RpsKey, TemporaryFailure
from nfse_core.providers.registry import (
    Endpoints,
    ProviderConfig,
    ProviderRegistry,
    load_default_data,
)
from nfse_core.providers.signer import RpsSigner
from nfse_core.providers.tls import client_tls_context
from nfse_core.xml.builder import to_bytes
from nfse_local.certs import generate_server_certificate, mutual_tls_server_context
from nfse_local.samples import TENANTS
from nfse_local.simulator import ProviderSimulator
from tests.conftest_provider import INSCRICAO, rps_document

pytestmark = pytest.mark.integration

MUNICIPIO = "3550308"  # what nfse_local.samples.invoice_body uses
TRUSTED = TENANTS[0].cnpjs[0]
ALPHANUMERIC = TENANTS[0].cnpjs[1]  # has a certificate, but the provider does not trust it


@pytest.fixture
def store(cert_dir: Path) -> FileCertificateStore:
    return FileCertificateStore(cert_dir)


@pytest.fixture
def tls_simulator(
    store: FileCertificateStore, tmp_path: Path
) -> Iterator[tuple[ProviderSimulator, Path]]:
    """An HTTPS simulator that trusts TRUSTED's certificate only; and the CA bundle for it."""
    key, cert = generate_server_certificate("127.0.0.1")
    context = mutual_tls_server_context(key, cert, [store.get(TRUSTED).cert], tmp_path)
    bundle = tmp_path / "provider-ca.pem"
    bundle.write_bytes(cert.public_bytes(Encoding.PEM))
    with ProviderSimulator(tls=context) as sim:
        yield sim, bundle


def registry_for(url: str, *, client_certificate: bool) -> ProviderRegistry:
    municipios, simulator = load_default_data()
    base = next(iter(municipios.values()))
    config: ProviderConfig = base.model_copy(
        update={
            "endpoints": Endpoints(producao=url, homologacao=url),
            "client_certificate": client_certificate,
            "example": False,
        }
    )
    return ProviderRegistry({MUNICIPIO: config}, simulator)


def signed_rps(registry: ProviderRegistry, store: FileCertificateStore, numero: int) -> bytes:
    document = rps_document(numero, cnpj=TRUSTED)
    return RpsSigner(registry, store)(TRUSTED, MUNICIPIO, to_bytes(document))


def test_the_company_certificate_authenticates_the_connection(
    tls_simulator: tuple[ProviderSimulator, Path], store: FileCertificateStore
) -> None:
    sim, bundle = tls_simulator
    assert sim.url.startswith("https://")
    registry = registry_for(sim.url, client_certificate=True)
    clients = ProviderClients(registry, 4, store, ca_bundle=str(bundle))

    client = clients(MUNICIPIO, TRUSTED)
    issued = client.issue(signed_rps(registry, store, 501))
    assert isinstance(issued, Issued)
    again = clients(MUNICIPIO, TRUSTED)
    assert again is client  # one SSL context per company and endpoint, reused
    found = again.consult(
        RpsKey(cnpj=TRUSTED, inscricao_municipal=INSCRICAO, numero=501, serie="1", tipo=1)
    )
    assert isinstance(found, Issued) and found.nfse_number == issued.nfse_number

    stats = sim.stats()
    subject = store.get(TRUSTED).cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    assert stats["tls_client_subjects"] == {str(subject[0].value): 2}
    assert stats["issued"] == 1


@pytest.mark.parametrize(
    ("client_certificate", "cnpj", "with_bundle"),
    [
        (False, TRUSTED, True),  # the provider demands a certificate; none is presented
        (True, ALPHANUMERIC, True),  # a company certificate the provider does not trust
        (True, TRUSTED, False),  # default roots: the provider's server is not trusted
    ],
    ids=["no-client-certificate", "untrusted-client", "untrusted-server"],
)
def test_a_failed_handshake_sends_nothing_and_is_temporary(
    tls_simulator: tuple[ProviderSimulator, Path],
    store: FileCertificateStore,
    client_certificate: bool,
    cnpj: str,
    with_bundle: bool,
) -> None:
    sim, bundle = tls_simulator
    registry = registry_for(sim.url, client_certificate=client_certificate)
    clients = ProviderClients(registry, 4, store, ca_bundle=str(bundle) if with_bundle else "")

    answer = clients(MUNICIPIO, cnpj).issue(signed_rps(registry, store, 502))

    assert isinstance(answer, TemporaryFailure)
    assert sim.stats()["total_requests"] == 0 and sim.stats()["issued"] == 0


def test_a_company_without_a_certificate_is_a_certificate_error(
    store: FileCertificateStore, tmp_path: Path
) -> None:
    registry = registry_for("https://127.0.0.1:9/nfse", client_certificate=True)
    with pytest.raises(CertificateNotFound):
        ProviderClients(registry, 4, FileCertificateStore(tmp_path))(MUNICIPIO, TRUSTED)
    with pytest.raises(CertificateNotFound):
        ProviderClients(registry, 4)(MUNICIPIO, TRUSTED)  # no store at all


def test_the_client_key_never_stays_on_disk(
    store: FileCertificateStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))

    context = client_tls_context(store.get(TRUSTED))

    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert list(scratch.iterdir()) == []
