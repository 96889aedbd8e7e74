"""parse_untrusted: entities, DOCTYPEs and oversized input refused; real documents round-trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from nfse_core.xml.builder import build_gerar_nfse_envio, to_bytes
from nfse_core.xml.safe import DEFAULT_MAX_BYTES, RejectReason, UnsafeXml, parse_untrusted
from nfse_core.xml.schema import NFSE_NS
from nfse_core.xml.validate import validate_rps_document
from tests.unit.fixtures_xml import (
    EMITTED_ON,
    INVOICE_ID,
    TOMADOR_CNPJ,
    sample_request,
    sample_rps,
    sample_tomador,
)

pytestmark = pytest.mark.unit

PASSWD = Path("/etc/passwd")

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<r><a>&x;</a><b attr="&x;"/></r>"""

XXE_PARAMETER = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]>
<r/>"""

EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE r SYSTEM "http://127.0.0.1:9/evil.dtd">
<r/>"""


def lol_document(levels: int) -> bytes:
    """The billion laughs: each entity is ten of the one before; `levels` of them."""
    declarations = ['<!ENTITY lol0 "lol">']
    for level in range(1, levels + 1):
        declarations.append(f'<!ENTITY lol{level} "{f"&lol{level - 1};" * 10}">')
    return (
        f'<?xml version="1.0"?>\n<!DOCTYPE lolz [\n{"".join(declarations)}\n]>\n'
        f'<lolz a="&lol{levels};">&lol{levels};</lolz>'
    ).encode()


def refused(data: bytes, **kwargs: int) -> UnsafeXml:
    with pytest.raises(UnsafeXml) as caught:
        parse_untrusted(data, **kwargs)
    return caught.value


# --- refused ------------------------------------------------------------------------------


def test_external_entity_is_refused_and_the_file_never_appears() -> None:
    error = refused(XXE)

    assert error.reason is RejectReason.DOCTYPE
    assert "root:" not in str(error)
    if PASSWD.is_file():
        first_line = PASSWD.read_text().splitlines()[0]
        assert first_line not in str(error)


def test_external_parameter_entity_is_refused() -> None:
    error = refused(XXE_PARAMETER)

    assert error.reason is RejectReason.DOCTYPE
    assert "root:" not in str(error)


def test_external_dtd_is_refused_without_fetching_it() -> None:
    assert refused(EXTERNAL_DTD).reason is RejectReason.DOCTYPE


@pytest.mark.timeout(5)
def test_billion_laughs_is_refused_quickly() -> None:
    error = refused(lol_document(9))

    assert error.reason is RejectReason.DOCTYPE
    assert "lollollol" not in str(error)


def test_small_entity_expansion_under_the_parser_limits_is_still_refused() -> None:
    error = refused(lol_document(2))

    assert error.reason is RejectReason.DOCTYPE
    assert "lollollol" not in str(error)


def test_internal_entity_declaration_alone_is_refused() -> None:
    data = b'<!DOCTYPE r [<!ENTITY greeting "hello">]><r>&greeting;</r>'

    assert refused(data).reason is RejectReason.DOCTYPE


def test_doctype_in_utf16_is_refused() -> None:
    data = '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE r [<!ENTITY x "y">]><r>&x;</r>'

    assert refused(data.encode("utf-16")).reason is RejectReason.DOCTYPE


def test_oversized_document_is_refused_before_parsing() -> None:
    # Not even well-formed: the size check must come first.
    data = b"<r>" + b"x" * 100

    error = refused(data, max_bytes=50)

    assert error.reason is RejectReason.TOO_LARGE
    assert "103" in error.detail


def test_default_limit_is_one_megabyte() -> None:
    data = b"<r>" + b"x" * DEFAULT_MAX_BYTES + b"</r>"

    assert DEFAULT_MAX_BYTES == 1_000_000
    assert refused(data).reason is RejectReason.TOO_LARGE


def test_a_document_exactly_at_the_limit_parses() -> None:
    data = b"<r>ok</r>"

    assert parse_untrusted(data, max_bytes=len(data)).text == "ok"


@pytest.mark.parametrize(
    "data", [b"", b"not xml", b"<r>", b"<r></s>", b"<r>&undeclared;</r>", b"<a/><b/>"]
)
def test_malformed_input_is_refused(data: bytes) -> None:
    assert refused(data).reason is RejectReason.MALFORMED


def test_unsafe_xml_is_a_value_error_with_a_reason() -> None:
    error = refused(XXE)

    assert isinstance(error, ValueError)
    assert str(error).startswith("doctype: ")


# --- accepted -----------------------------------------------------------------------------


def test_plain_document_parses() -> None:
    root = parse_untrusted(b'<?xml version="1.0" encoding="UTF-8"?><r a="1"><c>texto</c></r>')

    assert root.tag == "r"
    assert root.get("a") == "1"
    assert root.findtext("c") == "texto"


def test_provider_answer_with_prefixes_and_latin1_parses() -> None:
    data = (
        '<?xml version="1.0" encoding="ISO-8859-1"?>'
        f'<ns2:GerarNfseResposta xmlns:ns2="{NFSE_NS}"><ns2:ListaMensagemRetorno>'
        "<ns2:MensagemRetorno><ns2:Codigo>E160</ns2:Codigo>"
        "<ns2:Mensagem>Inscrição inválida</ns2:Mensagem></ns2:MensagemRetorno>"
        "</ns2:ListaMensagemRetorno></ns2:GerarNfseResposta>"
    ).encode("iso-8859-1")

    root = parse_untrusted(data)

    message = root.findtext(".//n:Mensagem", namespaces={"n": NFSE_NS})
    assert message == "Inscrição inválida"


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"tomador": None},
        {"tomador": sample_tomador(TOMADOR_CNPJ), "issRetido": True},
    ],
    ids=["tomador-cpf", "no-tomador", "tomador-cnpj-retido"],
)
def test_built_document_round_trips_to_the_same_bytes(overrides: dict[str, object]) -> None:
    document = build_gerar_nfse_envio(
        sample_request(**overrides), sample_rps(), INVOICE_ID, EMITTED_ON
    )
    data = to_bytes(document)

    parsed = parse_untrusted(data)

    assert to_bytes(parsed) == data
    validate_rps_document(parsed)


def test_comments_and_processing_instructions_survive_a_round_trip() -> None:
    data = b"<?xml version='1.0' encoding='UTF-8'?>\n<r><!-- kept --><?pi data?><c>1</c></r>"

    assert to_bytes(parse_untrusted(data)) == data
