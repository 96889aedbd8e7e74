"""The NFS-e Nacional client (nfse_core.providers.nacional.transport) against the simulated
SEFIN Nacional (nfse_local.simulator_nacional, code of its own) over mutual TLS: what the worker
meets, issue, duplicate, consult, a lost answer and consult lag."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from lxml import etree

from nfse_core.domain.rps import RpsIdentity
from nfse_core.domain.validation import parse_invoice_request
from nfse_core.providers.nacional.document import DOCUMENT
from nfse_core.providers.nacional.transport import NacionalClient
from nfse_core.providers.port import Issued, Rejected, RpsKey, RpsNotFound, TemporaryFailure
from nfse_core.xml.signing import XmlSigner
from nfse_local.certs import generate_key_and_certificate
from nfse_local.samples import nacional_body
from nfse_local.simulator_nacional import NacionalSimulator

pytestmark = pytest.mark.integration

CNPJ = "11222333000181"
BELO_HORIZONTE = "3106200"
KEY, CERT = generate_key_and_certificate(CNPJ)


@pytest.fixture
def sim() -> Iterator[NacionalSimulator]:
    with NacionalSimulator(trusted_clients=[CERT]) as simulator:
        yield simulator


@pytest.fixture
def client(sim: NacionalSimulator, tmp_path: Path) -> Iterator[NacionalClient]:
    cert = tmp_path / "company.pem"
    key = tmp_path / "company.key"
    cert.write_bytes(CERT.public_bytes(Encoding.PEM))
    key.write_bytes(KEY.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE would replace the simulator's CA
    session.cert = (str(cert), str(key))
    session.verify = str(sim.ca_bundle)
    with NacionalClient(sim.base_url, session=session, timeout=(2.0, 3.0)) as nacional:
        yield nacional


def signed_dps(numero: int, **changes: Any) -> bytes:
    request = parse_invoice_request(nacional_body(CNPJ, **changes), date(2026, 11, 30))
    document = DOCUMENT.build_document(
        request, RpsIdentity(numero=numero, serie="1"), "INV", date(2026, 11, 30)
    )
    signer = XmlSigner(KEY, CERT, signature_algorithm="rsa-sha256", digest_algorithm="sha256")
    return signer.sign_bytes(etree.fromstring(document))


def key(numero: int) -> RpsKey:
    return RpsKey(
        cnpj=CNPJ, inscricao_municipal=None, numero=numero, serie="1", municipio=BELO_HORIZONTE
    )


def test_issue_answers_issued_at_once_and_the_consult_finds_the_same_nfse(
    client: NacionalClient, sim: NacionalSimulator
) -> None:
    issued = client.emitir(signed_dps(1))
    assert isinstance(issued, Issued), issued
    assert issued.access_key is not None and len(issued.access_key) == 50
    found = client.consultar_dps(key(1))
    assert isinstance(found, Issued)
    assert (found.access_key, found.nfse_number) == (issued.access_key, issued.nfse_number)
    assert isinstance(client.consultar_dps(key(2)), RpsNotFound)
    assert sim.stats()["max_issuances_per_dps"] == 1


def test_a_repeated_dps_is_a_duplicate_and_never_a_second_nfse(
    client: NacionalClient, sim: NacionalSimulator
) -> None:
    document = signed_dps(3)
    assert isinstance(client.emitir(document), Issued)
    again = client.emitir(document)
    assert isinstance(again, Rejected) and again.duplicate_rps
    assert "E0014" in again.codes
    assert sim.stats()["issued"] == 1


def test_a_lost_answer_is_undecided_and_the_consult_settles_it(
    client: NacionalClient, sim: NacionalSimulator
) -> None:
    sim.set_faults(lost_rate=1.0)
    lost = client.emitir(signed_dps(4))
    assert isinstance(lost, TemporaryFailure)
    sim.set_faults(lost_rate=0.0)
    found = client.consultar_dps(key(4))
    assert isinstance(found, Issued)
    assert sim.stats()["issued"] == 1


def test_during_consult_lag_not_found_is_what_settle_time_covers(
    client: NacionalClient, sim: NacionalSimulator
) -> None:
    sim.set_faults(consult_lag_seconds=30.0)
    assert isinstance(client.emitir(signed_dps(5)), Issued)
    # The service has it, but its consult does not show it yet: only settle_seconds (the
    # registry's) lets the worker tell this from "never issued".
    assert isinstance(client.consultar_dps(key(5)), RpsNotFound)


def test_a_business_rejection_keeps_the_service_codes(client: NacionalClient) -> None:
    rejected = client.emitir(signed_dps(6, discriminacao="Servico [sim:reject]"))
    assert isinstance(rejected, Rejected) and not rejected.duplicate_rps
    assert rejected.codes and rejected.messages[0].mensagem
