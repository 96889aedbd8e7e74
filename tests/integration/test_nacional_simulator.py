"""The simulated SEFIN Nacional (nfse_local.simulator_nacional) over mutual TLS.

The DPS documents are written here by hand from a small template and signed here with xmlsec
(RSA-SHA1, the simulator's own NFS-e signature is RSA-SHA256), so the simulator is checked
against neither nfse_core nor itself; one test, last, sends the DPS nfse_core builds and signs.
The NFS-e it returns is validated with lxml against NFSe_v1.01.xsd of the installed nfelib
package, loaded here on its own.
"""

from __future__ import annotations

import base64
import gzip
import http.client
import json
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from lxml import etree

from nfse_core.providers.nacional.document import DOCUMENT
from nfse_core.xml.signature_names import DigestAlgorithmName, SignatureAlgorithmName
from nfse_core.xml.signing import XmlSigner
from nfse_local.certs import generate_key_and_certificate
from nfse_local.simulator_nacional import Forced, NacionalFaults, NacionalSimulator
from tests.unit.fixtures_xml import EMITTED_ON, INVOICE_ID, sample_request, sample_rps

pytestmark = pytest.mark.integration

NS = "http://www.sped.fazenda.gov.br/nfse"
DSIG = "http://www.w3.org/2000/09/xmldsig#"
CNPJ = "12345678000195"
OTHER_CNPJ = "98765432000198"
MUNICIPIO = "3550308"
FIXTURES = Path(__file__).parent.parent / "fixtures" / "nacional" / "answers"


# -- certificates


@dataclass(frozen=True)
class Company:
    cnpj: str
    key: rsa.RSAPrivateKey
    cert: x509.Certificate
    cert_file: Path
    key_file: Path


def _company(cnpj: str, directory: Path) -> Company:
    key, cert = generate_key_and_certificate(cnpj)
    cert_file, key_file = directory / f"{cnpj}.crt", directory / f"{cnpj}.key"
    cert_file.write_bytes(cert.public_bytes(Encoding.PEM))
    key_file.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    return Company(cnpj, key, cert, cert_file, key_file)


@pytest.fixture(scope="module")
def company(tmp_path_factory: pytest.TempPathFactory) -> Company:
    return _company(CNPJ, tmp_path_factory.mktemp("company"))


@pytest.fixture(scope="module")
def other(tmp_path_factory: pytest.TempPathFactory) -> Company:
    return _company(OTHER_CNPJ, tmp_path_factory.mktemp("other"))


@pytest.fixture
def sim(company: Company, other: Company) -> Iterator[NacionalSimulator]:
    with NacionalSimulator(trusted_clients=[company.cert, other.cert]) as simulator:
        yield simulator


# -- documents


def dps_xml(
    n_dps: int,
    *,
    cnpj: str = CNPJ,
    desc: str = "Consultoria em sistemas",
    tp_amb: str = "2",
    dps_id: str | None = None,
    extra_valores: str = "",
) -> bytes:
    identifier = dps_id or f"DPS{MUNICIPIO}2{cnpj}00001{n_dps:015d}"
    return (
        f'<DPS xmlns="{NS}" versao="1.01"><infDPS Id="{identifier}">'
        f"<tpAmb>{tp_amb}</tpAmb><dhEmi>2026-01-05T10:00:00-03:00</dhEmi>"
        f"<verAplic>tests-1.0</verAplic><serie>1</serie><nDPS>{n_dps}</nDPS>"
        f"<dCompet>2026-01-05</dCompet><tpEmit>1</tpEmit><cLocEmi>{MUNICIPIO}</cLocEmi>"
        f"<prest><CNPJ>{cnpj}</CNPJ><regTrib><opSimpNac>1</opSimpNac>"
        f"<regEspTrib>0</regEspTrib></regTrib></prest>"
        f"<serv><locPrest><cLocPrestacao>{MUNICIPIO}</cLocPrestacao></locPrest>"
        f"<cServ><cTribNac>010101</cTribNac><xDescServ>{desc}</xDescServ></cServ></serv>"
        f"<valores><vServPrest><vServ>1000.00</vServ></vServPrest>{extra_valores}"
        f"<trib><tribMun><tribISSQN>1</tribISSQN><tpRetISSQN>1</tpRetISSQN>"
        f"<pAliq>2.00</pAliq></tribMun><totTrib><indTotTrib>0</indTotTrib></totTrib></trib>"
        f"</valores></infDPS></DPS>"
    ).encode()


def sign(xml: bytes, signer: Company, *, prefix: str | None = None) -> bytes:
    """`xml` with infDPS signed by `signer`: enveloped, C14N 1.0, RSA-SHA1, SHA-1 digest."""
    root = etree.fromstring(xml)
    inf = root[0]
    signature = xmlsec.template.create(
        root, xmlsec.constants.TransformInclC14N, xmlsec.constants.TransformRsaSha1, ns=prefix
    )
    inf.addnext(signature)
    reference = xmlsec.template.add_reference(
        signature, xmlsec.constants.TransformSha1, uri=f"#{inf.get('Id')}"
    )
    xmlsec.template.add_transform(reference, xmlsec.constants.TransformEnveloped)
    xmlsec.template.add_transform(reference, xmlsec.constants.TransformInclC14N)
    xmlsec.template.add_x509_data(xmlsec.template.ensure_key_info(signature))
    xmlsec.tree.add_ids(root, ["Id"])
    context = xmlsec.SignatureContext()
    key = xmlsec.Key.from_file(str(signer.key_file), xmlsec.constants.KeyDataFormatPem)
    key.load_cert_from_file(str(signer.cert_file), xmlsec.constants.KeyDataFormatPem)
    context.key = key
    context.sign(signature)
    return etree.tostring(root, encoding="UTF-8", xml_declaration=True)


def packed(xml: bytes) -> bytes:
    return json.dumps(
        {"dpsXmlGZipB64": base64.b64encode(gzip.compress(xml, mtime=0)).decode()}
    ).encode()


def unpacked(value: str) -> bytes:
    return gzip.decompress(base64.b64decode(value))


@cache
def nfse_schema() -> etree.XMLSchema:
    path = resources.files("nfelib") / "nfse/schemas/v1_0/NFSe_v1.01.xsd"
    return etree.XMLSchema(etree.parse(str(path)))


# -- the client side


@dataclass
class Answer:
    status: int
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


def client_context(sim: NacionalSimulator, company: Company | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(sim.ca_bundle))
    if company is not None:
        context.load_cert_chain(company.cert_file, company.key_file)
    return context


def call(
    sim: NacionalSimulator,
    method: str,
    path: str,
    body: bytes | None = None,
    *,
    company: Company | None,
    timeout: float = 10.0,
) -> Answer:
    """One request on a new connection, presenting `company`'s certificate."""
    context = client_context(sim, company)
    connection = http.client.HTTPSConnection(sim.host, sim.port, context=context, timeout=timeout)
    headers = {"Content-Type": "application/json"} if body is not None else {}
    try:
        connection.request(method, f"/SefinNacional{path}", body=body, headers=headers)
        response = connection.getresponse()
        return Answer(response.status, response.read())
    finally:
        connection.close()


@pytest.fixture
def api(sim: NacionalSimulator, company: Company) -> Any:
    def request(method: str, path: str, body: bytes | None = None, **kw: Any) -> Answer:
        return call(sim, method, path, body, company=kw.pop("company", company), **kw)

    return request


def post(api: Any, xml: bytes, **kw: Any) -> Answer:
    answer: Answer = api("POST", "/nfse", packed(xml), **kw)
    return answer


def codes(answer: Answer) -> list[str]:
    return [item["Codigo"] for item in answer.json["erros"]]


def dps_id(n_dps: int, cnpj: str = CNPJ) -> str:
    return f"DPS{MUNICIPIO}2{cnpj}00001{n_dps:015d}"


# -- mutual TLS


def test_without_a_client_certificate_the_handshake_is_refused(
    sim: NacionalSimulator, company: Company
) -> None:
    context = client_context(sim, None)
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        connection = http.client.HTTPSConnection(sim.host, sim.port, context=context, timeout=5)
        try:
            connection.request("HEAD", f"/SefinNacional/dps/{dps_id(1)}")
            connection.getresponse().read()
        finally:
            connection.close()
    assert sim.stats()["total_requests"] == 0


def test_a_certificate_the_service_does_not_trust_is_refused(
    sim: NacionalSimulator, tmp_path: Path
) -> None:
    stranger = _company("11111111000191", tmp_path)
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        call(sim, "HEAD", f"/dps/{dps_id(1)}", company=stranger)
    assert sim.stats()["total_requests"] == 0


# -- issuing


def test_a_signed_dps_is_issued_as_an_nfse_that_validates(
    sim: NacionalSimulator, api: Any, company: Company
) -> None:
    answer = post(api, sign(dps_xml(1), company))
    assert answer.status == 201, answer.body
    body = answer.json
    expected = json.loads((FIXTURES / "post_nfse_201.json").read_text(encoding="utf-8"))
    assert set(body) == set(expected)
    assert body["tipoAmbiente"] == 2
    assert body["alertas"] is None
    chave = body["chaveAcesso"]
    assert len(chave) == 50 and chave.isdigit()
    # cMun + ambGer 2 + tpInsc 2 + CNPJ + nNFSe (13) + AAMM + código (9) + DV.
    assert chave[:7] == MUNICIPIO and chave[7:9] == "22" and chave[9:23] == CNPJ
    assert int(chave[23:36]) == 1
    assert body["idDps"] == f"NFS{chave}"  # as the captured answers (see the fixture README)
    document = etree.fromstring(unpacked(body["nfseXmlGZipB64"]))
    assert nfse_schema().validate(document), nfse_schema().error_log
    inf = document.find(f"{{{NS}}}infNFSe")
    assert inf is not None and inf.get("Id") == f"NFS{chave}"
    assert inf.find(f"{{{NS}}}DPS/{{{NS}}}infDPS").get("Id") == dps_id(1)  # type: ignore[union-attr]
    assert inf.findtext(f"{{{NS}}}valores/{{{NS}}}vISSQN") == "20.00"
    assert inf.findtext(f"{{{NS}}}valores/{{{NS}}}vLiq") == "1000.00"
    # The embedded DPS keeps the company's signature; infNFSe carries the SEFIN's.
    signatures = document.findall(f".//{{{DSIG}}}Signature")
    assert len(signatures) == 2
    xmlsec.tree.add_ids(document, ["Id"])
    context = xmlsec.SignatureContext()
    context.key = xmlsec.Key.from_memory(
        sim.signing_cert.public_bytes(Encoding.PEM), xmlsec.constants.KeyDataFormatCertPem
    )
    nfse_signature = document.find(f"{{{DSIG}}}Signature")
    assert nfse_signature is not None
    context.verify(nfse_signature)
    stats = sim.stats()
    assert stats["issued"] == 1 and stats["issuances_per_dps"] == {dps_id(1): 1}


def test_a_repeated_dps_is_refused_with_e0014(
    api: Any, sim: NacionalSimulator, company: Company
) -> None:
    signed = sign(dps_xml(2), company)
    first = post(api, signed)
    assert first.status == 201
    again = post(api, signed)
    assert again.status == 400
    assert codes(again) == ["E0014"]
    assert again.json["idDPS"] == dps_id(2)
    stats = sim.stats()
    assert stats["duplicates_refused"] == 1 and stats["max_issuances_per_dps"] == 1


def test_concurrent_posts_of_one_dps_issue_it_once(
    api: Any, sim: NacionalSimulator, company: Company
) -> None:
    signed = sign(dps_xml(3), company)
    statuses: list[int] = []
    lock = threading.Lock()

    def send() -> None:
        status = post(api, signed).status
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=send) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [201, 400, 400, 400, 400, 400]
    assert sim.stats()["max_issuances_per_dps"] == 1


# -- refusals


def test_the_error_answer_has_the_real_shape(api: Any) -> None:
    answer = post(api, dps_xml(4))  # unsigned
    assert answer.status == 400
    expected = json.loads((FIXTURES / "post_nfse_400.json").read_text(encoding="utf-8"))
    assert set(answer.json) == set(expected)
    assert {"Codigo", "Descricao"} <= set(answer.json["erros"][0])
    assert codes(answer) == ["E0717"]


def test_a_tampered_dps_is_refused_with_e0714(api: Any, company: Company) -> None:
    signed = sign(dps_xml(5), company).replace(b"1000.00", b"10.00")
    answer = post(api, signed)
    assert answer.status == 400 and codes(answer) == ["E0714"]


def test_a_dps_signed_by_another_company_is_refused_with_e0718(
    api: Any, company: Company, other: Company
) -> None:
    answer = post(api, sign(dps_xml(6), other))
    assert answer.status == 400 and codes(answer) == ["E0718"]


def test_a_signature_with_a_namespace_prefix_is_refused(api: Any, company: Company) -> None:
    answer = post(api, sign(dps_xml(7), company, prefix="ds"))
    assert answer.status == 400 and codes(answer) == ["E6155"]


def test_an_xsd_invalid_dps_is_refused_with_e1235(api: Any, company: Company) -> None:
    invalid = dps_xml(8).replace(b"<tpAmb>2</tpAmb>", b"<tpAmb>7</tpAmb>")
    answer = post(api, sign(invalid, company))
    assert answer.status == 400 and codes(answer) == ["E1235"]
    assert "tpAmb" in answer.json["erros"][0]["Complemento"]


def test_an_id_that_is_not_the_concatenation_is_refused_with_e0004(
    api: Any, company: Company
) -> None:
    wrong = dps_xml(9, dps_id=dps_id(10))
    answer = post(api, sign(wrong, company))
    assert answer.status == 400 and codes(answer) == ["E0004"]


def test_a_dps_for_the_other_environment_is_refused_with_e0006(api: Any, company: Company) -> None:
    answer = post(api, sign(dps_xml(11, tp_amb="1"), company))
    assert answer.status == 400 and codes(answer) == ["E0006"]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"not json", "RNG9999"),
        (b'{"outro": 1}', "RNG9999"),
        (b'{"dpsXmlGZipB64": "@@@"}', "E1225"),
        (json.dumps({"dpsXmlGZipB64": base64.b64encode(b"plain").decode()}).encode(), "E1225"),
        (packed(b"<DPS"), "E1226"),
        (packed(b'<!DOCTYPE x [<!ENTITY a "b">]><DPS xmlns="' + NS.encode() + b'"/>'), "E1226"),
        (packed(b"\0" * 2_000_000), "E1226"),
    ],
)
def test_malformed_requests_are_refused_with_the_error_shape(
    api: Any, body: bytes, code: str
) -> None:
    answer = api("POST", "/nfse", body)
    assert answer.status == 400
    assert codes(answer) == [code]


# -- consults


def test_the_dps_and_nfse_consults(api: Any, company: Company) -> None:
    assert api("HEAD", f"/dps/{dps_id(12)}").status == 404
    missing = api("GET", f"/dps/{dps_id(12)}")
    expected = json.loads((FIXTURES / "get_dps_404.json").read_text(encoding="utf-8"))
    assert missing.status == 404 and set(expected) <= set(missing.json)
    assert missing.json["erro"]["codigo"] == "E2404"

    issued = post(api, sign(dps_xml(12), company)).json
    head = api("HEAD", f"/dps/{dps_id(12)}")
    assert head.status == 200 and head.body == b""
    found = api("GET", f"/dps/{dps_id(12)}")
    assert found.status == 200
    assert found.json["chaveAcesso"] == issued["chaveAcesso"]
    assert found.json["idDps"] == dps_id(12)
    nfse = api("GET", f"/nfse/{issued['chaveAcesso']}")
    assert nfse.status == 200
    assert set(nfse.json) >= {"chaveAcesso", "nfseXmlGZipB64", "tipoAmbiente"}
    assert unpacked(nfse.json["nfseXmlGZipB64"]) == unpacked(issued["nfseXmlGZipB64"])

    unknown = api("GET", f"/nfse/{'1' * 50}")
    expected = json.loads((FIXTURES / "get_nfse_404.json").read_text(encoding="utf-8"))
    assert unknown.status == 404 and set(unknown.json) == set(expected)
    assert unknown.json["erro"]["codigo"] == "E2401"
    assert api("GET", "/nfse/123").json["erro"]["codigo"] == "E2406"
    assert api("HEAD", "/dps/DPS123").status == 400


# -- faults


def test_temporary_failure_issues_nothing(
    api: Any, sim: NacionalSimulator, company: Company
) -> None:
    sim.set_faults(error_rate=1.0)
    answer = post(api, sign(dps_xml(13), company))
    assert answer.status == 503
    sim.set_faults(error_rate=0.0)
    assert sim.issued(dps_id(13)) is None
    marked = post(api, sign(dps_xml(14, desc="x [sim:temporary]"), company))
    assert marked.status == 503 and sim.issued(dps_id(14)) is None
    assert sim.stats()["faults_injected"] == {"http_503": 1, "temporary": 1}


def test_a_lost_answer_issued_the_nfse(api: Any, sim: NacionalSimulator, company: Company) -> None:
    signed = sign(dps_xml(15, desc="x [sim:lost]"), company)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        post(api, signed)
    assert api("HEAD", f"/dps/{dps_id(15)}").status == 200
    assert codes(post(api, signed)) == ["E0014"]  # the marker acts the first time only
    assert sim.stats()["max_issuances_per_dps"] == 1


def test_issued_then_timeout(api: Any, sim: NacionalSimulator, company: Company) -> None:
    sim.set_faults(issued_then_timeout_rate=1.0, timeout_seconds=3.0)
    with pytest.raises((TimeoutError, socket.timeout)):
        post(api, sign(dps_xml(16), company), timeout=0.5)
    sim.set_faults(issued_then_timeout_rate=0.0)
    assert sim.issued(dps_id(16)) is not None
    assert api("GET", f"/dps/{dps_id(16)}").status == 200
    assert sim.stats()["faults_injected"]["issued_then_timeout"] == 1


def test_a_hang_issues_nothing(api: Any, sim: NacionalSimulator, company: Company) -> None:
    sim.set_faults(timeout_seconds=3.0)
    with pytest.raises((TimeoutError, socket.timeout)):
        post(api, sign(dps_xml(17, desc="[sim:timeout]"), company), timeout=0.5)
    assert sim.issued(dps_id(17)) is None


def test_consult_lag_hides_a_new_nfse_from_the_consults_only(
    api: Any, sim: NacionalSimulator, company: Company
) -> None:
    sim.set_faults(consult_lag_seconds=1.0)
    signed = sign(dps_xml(18), company)
    chave = post(api, signed).json["chaveAcesso"]
    assert api("HEAD", f"/dps/{dps_id(18)}").status == 404
    assert api("GET", f"/nfse/{chave}").status == 404
    assert codes(post(api, signed)) == ["E0014"]  # the duplicate check sees it at once
    deadline = time.monotonic() + 10
    while api("HEAD", f"/dps/{dps_id(18)}").status != 200:
        assert time.monotonic() < deadline, "the consult never showed the NFS-e"
        time.sleep(0.2)
    assert api("GET", f"/dps/{dps_id(18)}").json["chaveAcesso"] == chave


def test_forced_rejections(api: Any, sim: NacionalSimulator, company: Company) -> None:
    marked = post(api, sign(dps_xml(19, desc="Consultoria [sim:reject]"), company))
    assert marked.status == 400 and codes(marked) == ["E9901"]
    sim.force(20, Forced.REJECT)
    assert codes(post(api, sign(dps_xml(20), company))) == ["E9901"]
    sim.force(20, None)
    assert post(api, sign(dps_xml(20), company)).status == 201
    sim.set_faults(reject_rate=1.0)
    assert codes(post(api, sign(dps_xml(21), company))) == ["E9901"]
    assert sim.stats()["rejected"] == 3


def test_consult_errors_are_no_answer(api: Any, sim: NacionalSimulator, company: Company) -> None:
    post(api, sign(dps_xml(22), company))
    sim.set_faults(consult_error_rate=1.0)
    assert api("GET", f"/dps/{dps_id(22)}").status == 500
    assert api("HEAD", f"/dps/{dps_id(22)}").status == 500


def test_faults_over_the_admin_endpoint(company: Company, other: Company) -> None:
    with NacionalSimulator(trusted_clients=[company.cert], admin_port=0) as simulator:
        assert simulator.admin_url is not None
        host, port = simulator.admin_url.removeprefix("http://").split(":")

        def admin(method: str, path: str, body: bytes | None = None) -> Answer:
            connection = http.client.HTTPConnection(host, int(port), timeout=5)
            try:
                connection.request(method, path, body=body)
                response = connection.getresponse()
                return Answer(response.status, response.read())
            finally:
                connection.close()

        assert admin("POST", "/_admin/faults", b'{"consult_lag_seconds": 2.5}').status == 200
        assert simulator.faults.consult_lag_seconds == 2.5
        assert admin("POST", "/_admin/faults", b'{"no_such": 1}').status == 400
        assert admin("GET", "/_admin/stats").json["issued"] == 0
        # The API is not on the admin port.
        assert admin("GET", f"/SefinNacional/dps/{dps_id(1)}").status == 404
        assert admin("POST", "/_admin/reset", b"").status == 200


def test_fault_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        NacionalFaults(lost_rate=2.0)
    assert NacionalFaults().updated({"forced": {"3": "lost"}}).forced == {3: Forced.LOST}


def test_runs_as_a_module(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "nfse_local.simulator_nacional", "--insecure-http", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "/SefinNacional" in line, line
        base = line.split()[3]
        host, port = base.removeprefix("http://").split("/")[0].split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=5)
        connection.request("HEAD", f"/SefinNacional/dps/{dps_id(1)}")
        assert connection.getresponse().status == 404
        connection.close()
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.parametrize(("signature", "digest"), [("rsa-sha256", "sha256"), ("rsa-sha1", "sha1")])
def test_the_clients_signed_dps_is_issued(
    signature: SignatureAlgorithmName, digest: DigestAlgorithmName, tmp_path: Path
) -> None:
    """The other side, for once: the DPS nfse_core builds and signs passes every check."""
    request = sample_request(codigoTributacaoMunicipio=None)
    owner = _company(request.cnpj, tmp_path)
    unsigned = DOCUMENT.build_document(request, sample_rps(), INVOICE_ID, EMITTED_ON)
    signer = XmlSigner(
        owner.key, owner.cert, signature_algorithm=signature, digest_algorithm=digest
    )
    signed = signer.sign_bytes(etree.fromstring(unsigned))
    with NacionalSimulator(trusted_clients=[owner.cert]) as simulator:
        answer = call(simulator, "POST", "/nfse", packed(signed), company=owner)
        assert answer.status == 201, answer.body
        document = etree.fromstring(unpacked(answer.json["nfseXmlGZipB64"]))
        assert nfse_schema().validate(document), nfse_schema().error_log
