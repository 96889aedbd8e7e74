"""The provider simulator speaks each ABRASF family of tests/fixtures/abrasf_dialects.

Every request is the family's request fixture with its document's values substituted and signed
here with xmlsec and a throwaway company certificate (nothing of nfse_core builds or signs
them); every answer is read by its family's answer part and compared, element path by element
path, with the family's answer fixture. Then, per family, the dialects of the other families are
refused as the family refuses them.
"""

from __future__ import annotations

import copy
import http.client
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest
import requests
import xmlsec
from cryptography.hazmat.primitives import serialization
from lxml import etree

from nfse_local.certs import generate_key_and_certificate
from nfse_local.simulator import FaultConfig, ProviderSimulator
from nfse_local.simulator.dialects import FAMILIES, PartForm, ReferenceUri

FIXTURES = Path(__file__).parents[1] / "fixtures" / "abrasf_dialects"
CNPJ = "11222333000181"
DSIG = "http://www.w3.org/2000/09/xmldsig#"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
# The path of each family's real URL (FACTS.md), rebased on the simulator as the client does.
REAL_PATHS = {
    "abrasf-2.04": "/ws/nfse.asmx",
    "issnet-2.04": "/abrasf204/itauna/nfse.asmx",
    "webiss-2.02": "/ws/nfse.asmx",
    "betha-2.02": "/e-nota-contribuinte-ws/nfseWS",
}
ALL = sorted(FAMILIES)
_SAFE = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


@pytest.fixture(scope="module")
def sim() -> Iterator[ProviderSimulator]:
    with ProviderSimulator(faults=FaultConfig(timeout_seconds=2.0)) as simulator:
        yield simulator


@cache
def _keys() -> tuple[bytes, bytes]:
    key, cert = generate_key_and_certificate(CNPJ)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


# -- fixtures as requests


def _fixture(family: str, name: str) -> etree._Element:
    return etree.fromstring((FIXTURES / family / name).read_bytes(), _SAFE)


def _parts(envelope: etree._Element) -> tuple[etree._Element, etree._Element, etree._Element]:
    wrapper = envelope.find(f"{{{SOAP11}}}Body/*")
    assert wrapper is not None
    cabecalho, dados = wrapper.find("nfseCabecMsg"), wrapper.find("nfseDadosMsg")
    assert cabecalho is not None and dados is not None
    return wrapper, cabecalho, dados


def _document_of(family: str, name: str) -> tuple[etree._Element, etree._Element]:
    """(the request envelope fixture, a copy of the document it carries)."""
    envelope = _fixture(family, name)
    _, _, dados = _parts(envelope)
    if FAMILIES[family].part_form is PartForm.INLINE:
        # As a client holds it: standalone, without the envelope's namespace declarations.
        document = copy.deepcopy(dados[0])
        etree.cleanup_namespaces(document)
        return envelope, etree.fromstring(etree.tostring(document), _SAFE)
    return envelope, etree.fromstring((dados.text or "").encode(), _SAFE)


def _set(document: etree._Element, local: str, value: str) -> None:
    for node in document.iter(f"{{{etree.QName(document).namespace}}}{local}"):
        node.text = value


def _renumber(document: etree._Element, numero: int) -> etree._Element:
    for node in document.iter(f"{{{etree.QName(document).namespace}}}IdentificacaoRps"):
        node[0].text = str(numero)
    for node in document.iter():
        if isinstance(node.tag, str) and node.get("Id"):
            node.set("Id", re.sub(r"\d+$", str(numero), node.get("Id", "")))
    return document


def _sign(document: etree._Element, target_path: str, *, empty_uri: bool) -> etree._Element:
    """Sign the element at `target_path` (enveloped RSA-SHA256, C14N 1.0, the certificate in
    X509Data); the Signature is put right after it, as the ABRASF XSDs place it."""
    ns = etree.QName(document).namespace
    steps = "/".join(f"{{{ns}}}{step}" for step in target_path.split("/"))
    target = document if target_path == "." else document.find(steps)
    assert target is not None, target_path
    signature = xmlsec.template.create(
        document, xmlsec.constants.TransformInclC14N, xmlsec.constants.TransformRsaSha256
    )
    uri = "" if empty_uri else f"#{target.get('Id')}"
    reference = xmlsec.template.add_reference(signature, xmlsec.constants.TransformSha256, uri=uri)
    xmlsec.template.add_transform(reference, xmlsec.constants.TransformEnveloped)
    xmlsec.template.add_transform(reference, xmlsec.constants.TransformInclC14N)
    xmlsec.template.add_x509_data(xmlsec.template.ensure_key_info(signature))
    target.addnext(signature)
    if not empty_uri:
        xmlsec.tree.add_ids(document, ["Id"])
    key_pem, cert_pem = _keys()
    context = xmlsec.SignatureContext()
    key = xmlsec.Key.from_memory(key_pem, xmlsec.constants.KeyDataFormatPem)
    key.load_cert_from_memory(cert_pem, xmlsec.constants.KeyDataFormatPem)
    context.key = key
    context.sign(signature)
    return document


_SIGNED_TARGETS = {
    "GerarNfseEnvio": "Rps/InfDeclaracaoPrestacaoServico",
    "CancelarNfseEnvio": "Pedido/InfPedidoCancelamento",
    "ConsultarNfseRpsEnvio": "Pedido",
}


def _signed(family: str, document: etree._Element) -> etree._Element:
    dialect = FAMILIES[family]
    target = _SIGNED_TARGETS[etree.QName(document).localname]
    return _sign(document, target, empty_uri=dialect.reference_uri is ReferenceUri.EMPTY)


def _envelope_with(family: str, envelope: etree._Element, document: etree._Element) -> bytes:
    """The fixture's envelope carrying `document` in the family's part form."""
    envelope = copy.deepcopy(envelope)
    _, _, dados = _parts(envelope)
    if FAMILIES[family].part_form is PartForm.INLINE:
        dados.remove(dados[0])
        dados.append(document)
    else:
        dados.text = etree.tostring(document, encoding="unicode")
    return etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")


def _post(
    sim: ProviderSimulator, family: str, operation: str, body: bytes, action: str | None = None
) -> requests.Response:
    return requests.post(
        sim.family_url(family, REAL_PATHS[family]),
        data=body,
        headers={
            "Content-Type": "text/xml; charset=utf-8",
            "SOAPAction": f'"{action or FAMILIES[family].soap_actions[operation]}"',
        },
        timeout=10,
    )


# -- answers


def _answer_text(family: str, envelope: etree._Element) -> str:
    response = envelope.find(f"{{{SOAP11}}}Body/*")
    assert response is not None
    operation = etree.QName(response).localname.removesuffix("Response")
    part = response.find(FAMILIES[family].answer_part_name(operation))
    assert part is not None, etree.tostring(envelope)
    return part.text or ""


def _inner(family: str, envelope: etree._Element) -> etree._Element:
    text = re.sub(r"^\s*<\?xml[^>]*\?>", "", _answer_text(family, envelope), count=1)
    return etree.fromstring(text.encode(), _SAFE)


def _paths(element: etree._Element, depth: int) -> set[str]:
    found: set[str] = set()

    def walk(node: etree._Element, prefix: str, level: int) -> None:
        path = f"{prefix}/{{{etree.QName(node).namespace}}}{etree.QName(node).localname}"
        found.add(path)
        if level < depth:
            for child in node:
                # The RPS's own Signature travels back inside the NFS-e; the fixtures' RPS is
                # unsigned, so signatures are no part of the compared shape.
                if isinstance(child.tag, str) and etree.QName(child).namespace != DSIG:
                    walk(child, path, level + 1)

    walk(element, "", 1)
    return found


def _same_shape(family: str, answer: etree._Element, fixture: str, depth: int = 6) -> None:
    expected = _fixture(family, fixture)
    assert _paths(answer, 3) == _paths(expected, 3)  # envelope, response, answer part
    assert _paths(_inner(family, answer), depth) == _paths(_inner(family, expected), depth)


def _codes(document: etree._Element) -> list[str]:
    return [
        node.text or ""
        for node in document.iter()
        if isinstance(node.tag, str) and etree.QName(node).localname == "Codigo"
    ]


def _call(
    sim: ProviderSimulator, family: str, fixture: str, document: etree._Element
) -> etree._Element:
    envelope, _ = _document_of(family, fixture)
    operation = _operation_of(envelope)
    answer = _post(sim, family, operation, _envelope_with(family, envelope, document))
    assert answer.status_code == 200, answer.text
    return etree.fromstring(answer.content, _SAFE)


def _operation_of(envelope: etree._Element) -> str:
    wrapper, _, _ = _parts(envelope)
    local = etree.QName(wrapper).localname
    return local.removesuffix("Request")


_NUMBERS = iter(range(1000, 100000))


def _gerar(family: str, numero: int, **values: str) -> etree._Element:
    _, document = _document_of(family, "gerar_request.xml")
    _renumber(document, numero)
    for local, value in values.items():
        _set(document, local, value)
    return _signed(family, document)


def _consulta(family: str, numero: int, *, sign: bool | None = None) -> etree._Element:
    _, document = _document_of(family, "consultar_request.xml")
    _renumber(document, numero)
    if sign if sign is not None else "ConsultarNfsePorRps" in FAMILIES[family].signed:
        _signed(family, document)
    return document


def _nfse_number(inner: etree._Element) -> str:
    ns = etree.QName(inner).namespace
    number = inner.findtext(f".//{{{ns}}}InfNfse/{{{ns}}}Numero")
    assert number, etree.tostring(inner)
    return number


# -- each family, in its own dialect


@pytest.mark.parametrize("family", ALL)
def test_issue_answers_the_issued_fixture_shape_and_the_consult_finds_it(
    sim: ProviderSimulator, family: str
) -> None:
    numero = next(_NUMBERS)
    answer = _call(sim, family, "gerar_request.xml", _gerar(family, numero))
    _same_shape(family, answer, "gerar_answer_issued.xml")
    issued = _inner(family, answer)
    assert etree.QName(issued).namespace == FAMILIES[family].document_ns
    declaration = FAMILIES[family].answer_declaration
    if declaration:
        assert _answer_text(family, answer).startswith(declaration)
    consult = _call(sim, family, "consultar_request.xml", _consulta(family, numero))
    _same_shape(family, consult, "consultar_answer_issued.xml")
    assert _nfse_number(_inner(family, consult)) == _nfse_number(issued)
    assert sim.issued(CNPJ, numero) is not None


@pytest.mark.parametrize("family", ALL)
def test_consult_of_an_unknown_rps_answers_the_not_found_fixture(
    sim: ProviderSimulator, family: str
) -> None:
    answer = _call(sim, family, "consultar_request.xml", _consulta(family, next(_NUMBERS)))
    _same_shape(family, answer, "consultar_answer_not_found.xml")
    expected = _codes(_inner(family, _fixture(family, "consultar_answer_not_found.xml")))
    assert _codes(_inner(family, answer)) == expected == ["E4"]


@pytest.mark.parametrize("family", ALL)
def test_same_rps_twice_answers_the_duplicate_fixture(sim: ProviderSimulator, family: str) -> None:
    numero = next(_NUMBERS)
    _call(sim, family, "gerar_request.xml", _gerar(family, numero))
    again = _call(sim, family, "gerar_request.xml", _gerar(family, numero))
    _same_shape(family, again, "gerar_answer_duplicate.xml")
    assert _codes(_inner(family, again)) == ["E10"]
    assert sim.stats()["issuances_per_rps"].get(f"{CNPJ}:{numero}:1:1", 1) == 1


@pytest.mark.parametrize("family", ALL)
def test_cancel_of_an_issued_nfse(sim: ProviderSimulator, family: str) -> None:
    numero = next(_NUMBERS)
    issued = _inner(family, _call(sim, family, "gerar_request.xml", _gerar(family, numero)))
    _, pedido = _document_of(family, "cancelar_request.xml")
    _set(pedido, "Numero", _nfse_number(issued))
    for node in pedido.iter():
        if isinstance(node.tag, str) and node.get("Id"):
            node.set("Id", f"cancel{numero}")
    answer = _call(sim, family, "cancelar_request.xml", _signed(family, pedido))
    _same_shape(family, answer, "cancelar_answer.xml")


@pytest.mark.parametrize("family", ALL)
def test_lost_answer_then_consult_finds_exactly_one_nfse(
    sim: ProviderSimulator, family: str
) -> None:
    numero = next(_NUMBERS)
    sim.force(numero, "lost")
    try:
        envelope, _ = _document_of(family, "gerar_request.xml")
        body = _envelope_with(family, envelope, _gerar(family, numero))
        with pytest.raises((requests.ConnectionError, http.client.RemoteDisconnected)):
            _post(sim, family, "GerarNfse", body)
    finally:
        sim.force(numero, None)
    consult = _call(sim, family, "consultar_request.xml", _consulta(family, numero))
    assert _codes(_inner(family, consult)) == []
    _same_shape(family, consult, "consultar_answer_issued.xml")


def test_one_state_for_every_family(sim: ProviderSimulator) -> None:
    """An RPS issued through one family is a duplicate through another (prestador, numero,
    serie, tipo key the NFS-e, whatever the dialect)."""
    numero = next(_NUMBERS)
    _call(sim, "betha-2.02", "gerar_request.xml", _gerar("betha-2.02", numero))
    again = _call(sim, "issnet-2.04", "gerar_request.xml", _gerar("issnet-2.04", numero))
    assert _codes(_inner("issnet-2.04", again)) == ["E10"]


def test_health_lists_the_families_and_their_local_paths(sim: ProviderSimulator) -> None:
    health = requests.get(sim.base_url + "/_admin/health", timeout=5).json()
    assert health["families"] == {name: f"/{name}" for name in FAMILIES}


# -- the wrong dialect is refused


def _fault(answer: requests.Response) -> str:
    assert answer.status_code == 500, answer.text
    envelope = etree.fromstring(answer.content, _SAFE)
    fault = envelope.find(f"{{{SOAP11}}}Body/{{{SOAP11}}}Fault")
    assert fault is not None, answer.text
    return fault.findtext("faultstring") or ""


def _plain_envelope(document: etree._Element, operation: str, cabecalho_versao: str) -> bytes:
    """The plain ABRASF 2.04 envelope, built from the abrasf-2.04 request fixture."""
    envelope, _ = _document_of("abrasf-2.04", "gerar_request.xml")
    wrapper, cabecalho, dados = _parts(envelope)
    wrapper.tag = f"{{{etree.QName(wrapper).namespace}}}{operation}Request"
    cabecalho.text = (cabecalho.text or "").replace('versao="2.04"', f'versao="{cabecalho_versao}"')
    dados.text = etree.tostring(document, encoding="unicode")
    return etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")


def test_issnet_refuses_the_plain_envelope_with_a_fault(sim: ProviderSimulator) -> None:
    body = _plain_envelope(_gerar("issnet-2.04", next(_NUMBERS)), "GerarNfse", "1.00")
    assert "GerarNfseRequest" in _fault(_post(sim, "issnet-2.04", "GerarNfse", body))


def test_issnet_refuses_escaped_text_in_its_inline_parts(sim: ProviderSimulator) -> None:
    envelope, _ = _document_of("issnet-2.04", "gerar_request.xml")
    envelope = copy.deepcopy(envelope)
    _, _, dados = _parts(envelope)
    dados.remove(dados[0])
    dados.text = etree.tostring(_gerar("issnet-2.04", next(_NUMBERS)), encoding="unicode")
    body = etree.tostring(envelope, encoding="UTF-8")
    assert "inline" in _fault(_post(sim, "issnet-2.04", "GerarNfse", body))


def test_issnet_refuses_an_unsigned_consult(sim: ProviderSimulator) -> None:
    answer = _call(
        sim, "issnet-2.04", "consultar_request.xml", _consulta("issnet-2.04", 1, sign=False)
    )
    assert _codes(_inner("issnet-2.04", answer)) == ["E901"]


def test_issnet_refuses_a_signature_by_id_reference(sim: ProviderSimulator) -> None:
    _, document = _document_of("issnet-2.04", "gerar_request.xml")
    _renumber(document, next(_NUMBERS))
    _sign(document, "Rps/InfDeclaracaoPrestacaoServico", empty_uri=False)
    answer = _call(sim, "issnet-2.04", "gerar_request.xml", document)
    assert _codes(_inner("issnet-2.04", answer)) == ["E901"]


def test_issnet_refuses_the_cabecalho_of_version_2_04(sim: ProviderSimulator) -> None:
    envelope, _ = _document_of("issnet-2.04", "gerar_request.xml")
    envelope = copy.deepcopy(envelope)
    _, cabecalho, _ = _parts(envelope)
    cabecalho[0].set("versao", "2.04")
    body = _envelope_with("issnet-2.04", envelope, _gerar("issnet-2.04", next(_NUMBERS)))
    answer = etree.fromstring(_post(sim, "issnet-2.04", "GerarNfse", body).content, _SAFE)
    assert _codes(_inner("issnet-2.04", answer)) == ["E909"]


@pytest.mark.parametrize("family", ["webiss-2.02", "betha-2.02"])
def test_digits_families_refuse_a_dotted_item(sim: ProviderSimulator, family: str) -> None:
    document = _gerar(family, next(_NUMBERS), ItemListaServico="01.07")
    answer = _call(sim, family, "gerar_request.xml", document)
    assert _codes(_inner(family, answer)) == ["E910"]


@pytest.mark.parametrize("family", ["webiss-2.02", "betha-2.02"])
def test_2_02_families_refuse_a_2_04_document(sim: ProviderSimulator, family: str) -> None:
    _, plain = _document_of("abrasf-2.04", "gerar_request.xml")
    _renumber(plain, next(_NUMBERS))
    _set(plain, "ItemListaServico", "0107")
    document = _signed("abrasf-2.04", plain)
    answer = _call(sim, family, "gerar_request.xml", document)
    assert _codes(_inner(family, answer)) == ["E900"]


def test_betha_refuses_the_abrasf_soap_action(sim: ProviderSimulator) -> None:
    envelope, _ = _document_of("betha-2.02", "gerar_request.xml")
    body = _envelope_with("betha-2.02", envelope, _gerar("betha-2.02", next(_NUMBERS)))
    answer = _post(sim, "betha-2.02", "GerarNfse", body, "http://nfse.abrasf.org.br/GerarNfse")
    assert "SOAPAction" in _fault(answer)


def test_betha_refuses_the_plain_envelope(sim: ProviderSimulator) -> None:
    body = _plain_envelope(_gerar("betha-2.02", next(_NUMBERS)), "GerarNfse", "2.02")
    assert "no operation" in _fault(_post(sim, "betha-2.02", "GerarNfse", body, "GerarNfseEnvio"))


@pytest.mark.parametrize("family", ["abrasf-2.04", "webiss-2.02", "betha-2.02"])
def test_escaped_families_refuse_inline_xml(sim: ProviderSimulator, family: str) -> None:
    envelope, _ = _document_of(family, "gerar_request.xml")
    envelope = copy.deepcopy(envelope)
    _, _, dados = _parts(envelope)
    dados.text = None
    dados.append(_gerar(family, next(_NUMBERS)))
    body = etree.tostring(envelope, encoding="UTF-8")
    assert "escaped text" in _fault(_post(sim, family, "GerarNfse", body))


def test_plain_family_refuses_an_unsigned_gerar(sim: ProviderSimulator) -> None:
    _, document = _document_of("abrasf-2.04", "gerar_request.xml")
    _renumber(document, next(_NUMBERS))
    answer = _call(sim, "abrasf-2.04", "gerar_request.xml", document)
    assert _codes(_inner("abrasf-2.04", answer)) == ["E901"]


def test_fixture_envelopes_escape_what_they_carry() -> None:
    """The escaped families' fixtures hold text, ISSNet's hold elements (FACTS.md)."""
    for family in ALL:
        _, _, dados = _parts(_fixture(family, "gerar_request.xml"))
        inline = FAMILIES[family].part_form is PartForm.INLINE
        assert (len(dados) == 1) is inline
        assert bool((dados.text or "").strip()) is not inline
