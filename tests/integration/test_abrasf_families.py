"""Each ABRASF provider family, client against simulator over real HTTP on loopback.

The client speaks from the registry's dialect profile (nfse_core/providers/data/providers.json);
the simulator from its own table (nfse_local/simulator/dialects.py), both written from the
public facts in tests/fixtures/abrasf_dialects/<family>/FACTS.md. For every family: issue,
consult after a lost answer (one NFS-e, never two), "not found" as not found, a duplicate as a
duplicate, cancel; and a client holding the wrong profile is refused, never issued.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
import requests

from nfse_core.domain.rps import RpsIdentity
from nfse_core.domain.validation import parse_invoice_request
from nfse_core.providers.abrasf import AbrasfSoapClient
from nfse_core.providers.dialect import PLAIN_ABRASF_2_04
from nfse_core.providers.plugin import connect, document_of, signing_profile_of, standard_key
from nfse_core.providers.port import (
    Cancelled,
    Issued,
    Rejected,
    RpsKey,
    RpsNotFound,
    TemporaryFailure,
)
from nfse_core.providers.registry import (
    ProviderRegistry,
    ResolvedProvider,
    parse_registry_data,
)
from nfse_core.providers.shipped import shipped_data
from nfse_core.xml.documents import build_cancelar_nfse_envio
from nfse_core.xml.safe import parse_untrusted
from nfse_core.xml.signing import XmlSigner
from nfse_local.samples import invoice_body
from nfse_local.simulator import ProviderSimulator
from tests.conftest_provider import CNPJ, INSCRICAO, company_keys

pytestmark = pytest.mark.integration

# One municipality per family, with the URL shape its provider publishes (FACTS.md).
MUNICIPALITIES: dict[str, dict[str, Any]] = {
    "issnet-2.04": {
        "code": "3133808",
        "name": "Itaúna/MG",
        "endpoints": {"producao": "https://nfse.issnetonline.com.br/abrasf204/itauna/nfse.asmx"},
    },
    "webiss-2.02": {
        "code": "2910800",
        "name": "Feira de Santana/BA",
        "endpoints": {"producao": "https://feiradesantanaba.webiss.com.br/ws/nfse.asmx"},
    },
    # Betha: one service for every municipality (the profile's endpoints).
    "betha-2.02": {"code": "3101607", "name": "Alfenas/MG"},
    # No real municipality is confirmed on the plain dialect (its FACTS.md): a test entry.
    "abrasf-2.04": {
        "code": "3550308",
        "name": "plain ABRASF 2.04 test entry",
        "endpoints": {"producao": "https://plain-abrasf.test/nfse/ws.asmx"},
    },
}
FAMILIES = tuple(MUNICIPALITIES)


@pytest.fixture(scope="module")
def sim() -> Iterator[ProviderSimulator]:
    with ProviderSimulator() as simulator:
        yield simulator


@pytest.fixture(scope="module")
def registry(sim: ProviderSimulator) -> ProviderRegistry:
    data = copy.deepcopy(dict(shipped_data()))
    data["municipios"] = {
        m["code"]: {
            "name": m["name"],
            "profile": family,
            **({"endpoints": m["endpoints"]} if "endpoints" in m else {}),
        }
        for family, m in MUNICIPALITIES.items()
    }
    configs, simulator = parse_registry_data(data)
    return ProviderRegistry(configs, simulator, endpoint_override=f"abrasf-2.04={sim.url}")


class Family:
    """One family's municipality on the simulator: its document, signer and adapter."""

    def __init__(self, family: str, registry: ProviderRegistry) -> None:
        self.family = family
        self.municipio = MUNICIPALITIES[family]["code"]
        self.resolved: ResolvedProvider = registry.resolve(self.municipio)
        config = self.resolved.config
        profile = signing_profile_of(config)
        key, cert = company_keys()
        self.signer = XmlSigner(
            key,
            cert,
            signature_algorithm=profile.signature_algorithm,
            digest_algorithm=profile.digest_algorithm,
            reference_uri=profile.reference_uri,
            x509_form=profile.x509,
        )
        self.document = document_of(
            standard_key(config.standard, config.version), "homologacao", config.dialect.form
        )
        self.adapter = connect(self.resolved, requests.Session(), self.sign)

    def sign(self, cnpj: str, municipio: str, document: bytes) -> bytes:
        assert (cnpj, municipio) == (CNPJ, self.municipio)
        return self.signer.sign_bytes(parse_untrusted(document))

    def signed_rps(self, numero: int, **fields: Any) -> bytes:
        body = invoice_body(CNPJ, municipio=self.municipio, **fields)
        request = parse_invoice_request(body, date(2026, 11, 30))
        built = self.document.build_document(
            request, RpsIdentity(numero=numero, serie="1"), f"INV{numero}", date(2026, 11, 30)
        )
        return self.sign(CNPJ, self.municipio, built)

    def key(self, numero: int) -> RpsKey:
        return RpsKey(CNPJ, INSCRICAO, numero, "1", 1, municipio=self.municipio)


@pytest.fixture(params=FAMILIES)
def family(request: pytest.FixtureRequest, registry: ProviderRegistry) -> Family:
    return Family(request.param, registry)


def _numero(family: Family, offset: int) -> int:
    return 1000 * (FAMILIES.index(family.family) + 1) + offset


def test_the_family_is_spoken_at_its_own_path(family: Family, sim: ProviderSimulator) -> None:
    assert family.resolved.endpoint.startswith(sim.url.rsplit("/", 1)[0] + f"/{family.family}/")
    assert family.resolved.config.dialect.family == family.family


def test_issue_then_consult_finds_the_same_nfse(family: Family) -> None:
    numero = _numero(family, 1)
    issued = family.adapter.issue(family.signed_rps(numero))
    assert isinstance(issued, Issued), issued
    consulted = family.adapter.consult(family.key(numero))
    assert isinstance(consulted, Issued), consulted
    assert consulted.nfse_number == issued.nfse_number


def test_a_lost_answer_is_found_by_the_consult_and_issued_once(
    family: Family, sim: ProviderSimulator
) -> None:
    numero = _numero(family, 2)
    lost = family.adapter.issue(family.signed_rps(numero, discriminacao="Suporte [sim:lost]"))
    assert isinstance(lost, TemporaryFailure), lost
    consulted = family.adapter.consult(family.key(numero))
    assert isinstance(consulted, Issued), consulted
    assert sim.stats()["issuances_per_rps"][f"{CNPJ}/{numero}/1/1"] == 1


def test_an_unknown_rps_is_not_found(family: Family) -> None:
    assert isinstance(family.adapter.consult(family.key(_numero(family, 999))), RpsNotFound)


def test_a_second_send_is_the_family_s_duplicate(family: Family) -> None:
    signed = family.signed_rps(_numero(family, 3))
    assert isinstance(family.adapter.issue(signed), Issued)
    again = family.adapter.issue(signed)
    assert isinstance(again, Rejected) and again.duplicate_rps, again


def test_an_issued_nfse_is_cancelled(family: Family) -> None:
    issued = family.adapter.issue(family.signed_rps(_numero(family, 4)))
    assert isinstance(issued, Issued), issued
    pedido = build_cancelar_nfse_envio(
        numero_nfse=issued.nfse_number,
        cnpj=CNPJ,
        inscricao_municipal=INSCRICAO,
        codigo_municipio=family.municipio,
        codigo_cancelamento=2,
        pedido_id=f"cancel{issued.nfse_number}",
        form=family.resolved.config.dialect.form,
    )
    client = AbrasfSoapClient.for_provider(family.resolved, session=requests.Session())
    cancelled = client.cancelar_nfse(family.signer.sign_bytes(pedido))
    assert isinstance(cancelled, Cancelled), cancelled
    assert cancelled.nfse_number in (issued.nfse_number, None)


@pytest.mark.parametrize("family_name", [f for f in FAMILIES if f != "abrasf-2.04"])
def test_a_client_with_the_plain_profile_is_refused(
    family_name: str, registry: ProviderRegistry, sim: ProviderSimulator
) -> None:
    """The same municipality, the same URL, but today's plain 2.04 dialect and document: the
    family's service refuses it, and nothing is issued."""
    target = Family(family_name, registry)
    plain = Family.__new__(Family)
    plain.__dict__.update(target.__dict__)
    plain.document = document_of("abrasf-2.04", "homologacao", None)
    numero = _numero(target, 5)
    client = AbrasfSoapClient(target.resolved.endpoint, dialect=PLAIN_ABRASF_2_04)
    body = invoice_body(CNPJ, municipio=target.municipio)
    request = parse_invoice_request(body, date(2026, 11, 30))
    built = plain.document.build_document(
        request, RpsIdentity(numero=numero, serie="1"), f"INV{numero}", date(2026, 11, 30)
    )
    answer = client.gerar_nfse(XmlSigner(*company_keys()).sign_bytes(parse_untrusted(built)))
    assert not isinstance(answer, Issued), answer
    assert f"{CNPJ}/{numero}/1/1" not in sim.stats()["issuances_per_rps"]


def test_an_unsigned_consult_is_refused_where_the_family_signs_it(
    registry: ProviderRegistry,
) -> None:
    issnet = Family("issnet-2.04", registry)
    unsigned = AbrasfSoapClient.for_provider(issnet.resolved, session=requests.Session())
    assert unsigned.dialect.call("consultar_nfse_por_rps").signed
    # Without a signer the client does not send what the provider would refuse.
    assert isinstance(unsigned.consultar_nfse_por_rps(issnet.key(1)), TemporaryFailure)
    # Sent unsigned anyway (a wrong profile), the simulator refuses it.
    wrong = issnet.resolved.config.dialect.model_copy(
        update={"signed_operations": frozenset({"gerar_nfse", "cancelar_nfse"})}
    )
    client = AbrasfSoapClient(issnet.resolved.endpoint, dialect=wrong)
    assert not isinstance(client.consultar_nfse_por_rps(issnet.key(1)), (Issued, RpsNotFound))


def test_documents_are_sent_in_the_family_s_form(registry: ProviderRegistry) -> None:
    webiss = Family("webiss-2.02", registry)
    signed = webiss.signed_rps(_numero(webiss, 6))
    text = signed.decode()
    assert "<ItemListaServico>0107</ItemListaServico>" in text
    assert "<Aliquota>5.0000</Aliquota>" in text
    assert "<Tomador>" in text and "TomadorServico" not in text
    betha = Family("betha-2.02", registry)
    assert b"http://www.betha.com.br/e-nota-contribuinte-ws" in betha.signed_rps(1)
