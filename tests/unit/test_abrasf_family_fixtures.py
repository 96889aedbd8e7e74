"""The families' fixtures (tests/fixtures/abrasf_dialects/<family>, with their sources in
SOURCE.md) through the client: its envelope has the fixture request's shape, and every
fixture answer is read and classified as what it is (issued, duplicate, refusal, not found,
cancelled), so an issued NFS-e is never taken for a failure and a refusal never retried."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from lxml import etree

from nfse_core.providers.abrasf import (
    build_envelope,
    extract_payload,
    parse_cancelar_nfse_resposta,
    parse_consultar_nfse_rps_resposta,
    parse_gerar_nfse_resposta,
)
from nfse_core.providers.port import Cancelled, Issued, Rejected, RpsNotFound
from nfse_core.providers.registry import ProviderConfig
from nfse_core.providers.shipped import shipped_data

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "abrasf_dialects"
FAMILIES = ("abrasf-2.04", "issnet-2.04", "webiss-2.02", "betha-2.02")


def _config(family: str) -> ProviderConfig:
    profile = copy.deepcopy(dict(shipped_data()["profiles"][family]))
    profile.setdefault("endpoints", {"producao": "https://x.com.br/ws"})
    return ProviderConfig.model_validate({"name": family, **profile})


def _answer(family: str, name: str, operation: str) -> etree._Element:
    call = _config(family).dialect.call(operation)
    body = (FIXTURES / family / name).read_bytes()
    return extract_payload(body, answer=call.answer, response_element=call.response_element)


def _shape(node: etree._Element) -> list[str]:
    """The element paths of an envelope down to its parts (the document itself excluded)."""
    paths: list[str] = []
    for element in node.iter():
        if not isinstance(element.tag, str):
            continue
        path = "/".join(etree.QName(e).localname for e in [*element.iterancestors()][::-1])
        paths.append(f"{path}/{etree.QName(element).localname}".lstrip("/"))
        if etree.QName(element).localname in ("nfseCabecMsg", "nfseDadosMsg"):
            break
    return paths


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(
    ("operation", "fixture"),
    [("gerar_nfse", "gerar_request.xml"), ("consultar_nfse_por_rps", "consultar_request.xml")],
)
def test_the_client_s_envelope_has_the_fixture_s_shape(
    family: str, operation: str, fixture: str
) -> None:
    dialect = _config(family).dialect
    real = etree.fromstring((FIXTURES / family / fixture).read_bytes())
    body = real.find("{*}Body")
    assert body is not None
    wrapper = body[0]
    ours = etree.fromstring(build_envelope(operation, b"<x/>", dialect))
    mine = ours.find("{*}Body")[0]  # type: ignore[index]
    assert etree.QName(mine).namespace == etree.QName(wrapper).namespace
    assert etree.QName(mine).localname == etree.QName(wrapper).localname
    assert [etree.QName(c).localname for c in mine] == [etree.QName(c).localname for c in wrapper]
    inline = [len(part) > 0 for part in wrapper]
    assert [len(part) > 0 for part in mine] == inline
    if dialect.cabecalho_versao is not None:
        header = wrapper[0]
        cabecalho = header[0] if len(header) else etree.fromstring((header.text or "").encode())
        assert cabecalho.get("versao") == dialect.cabecalho_versao
        assert cabecalho.findtext("{*}versaoDados") == dialect.versao_dados


@pytest.mark.parametrize("family", FAMILIES)
def test_fixture_answers_are_classified(family: str) -> None:
    codes = _config(family)
    issued = parse_gerar_nfse_resposta(_answer(family, "gerar_answer_issued.xml", "gerar_nfse"))
    assert isinstance(issued, Issued), issued
    duplicate = parse_gerar_nfse_resposta(
        _answer(family, "gerar_answer_duplicate.xml", "gerar_nfse"), codes.duplicate_rps_codes
    )
    assert isinstance(duplicate, Rejected) and duplicate.duplicate_rps, duplicate
    rejected = parse_gerar_nfse_resposta(
        _answer(family, "gerar_answer_rejected.xml", "gerar_nfse"), codes.duplicate_rps_codes
    )
    assert isinstance(rejected, Rejected) and not rejected.duplicate_rps, rejected
    found = parse_consultar_nfse_rps_resposta(
        _answer(family, "consultar_answer_issued.xml", "consultar_nfse_por_rps"),
        codes.rps_not_found_codes,
    )
    assert isinstance(found, Issued), found
    missing = parse_consultar_nfse_rps_resposta(
        _answer(family, "consultar_answer_not_found.xml", "consultar_nfse_por_rps"),
        codes.rps_not_found_codes,
    )
    assert isinstance(missing, RpsNotFound), missing
    cancelled = parse_cancelar_nfse_resposta(
        _answer(family, "cancelar_answer.xml", "cancelar_nfse")
    )
    assert isinstance(cancelled, Cancelled), cancelled


def test_an_answer_with_its_own_encoding_declaration_keeps_its_accents() -> None:
    """Betha's `return` text starts with `encoding="ISO-8859-1"`: the text is already
    characters, and "Não" must stay "Não"."""
    rejected = parse_gerar_nfse_resposta(
        _answer("betha-2.02", "gerar_answer_rejected.xml", "gerar_nfse")
    )
    assert isinstance(rejected, Rejected)
    text = (FIXTURES / "betha-2.02" / "gerar_answer_rejected.xml").read_text("utf-8")
    assert "ISO-8859-1" in text
    accented = [c for c in rejected.summary() if ord(c) > 127]
    assert "Ã" not in rejected.summary()
    assert accented or "Não" not in text
