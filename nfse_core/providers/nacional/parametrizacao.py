"""The ADN parametrização API of the Sistema Nacional NFS-e: whether a municipality adheres.

`GET {base}/{codigoMunicipio}/convenio` over mutual TLS (the company's A1 certificate), base
`https://adn.nfse.gov.br/parametrizacao` (produção restrita: `adn.producaorestrita...`):
- 200 `{"parametrosConvenio": {"aderenteAmbienteNacional": 1, "aderenteEmissorNacional": 1,
  ...}, "mensagem": "..."}`: 1 = yes, 0 = no;
- 404 `{"parametrosConvenio": null, "mensagem": "O convênio do município ... ainda não está
  ativo..."}`: no active agreement.
Facts from the service's swagger and answers recorded in github.com/edusouza/nfse-emissor-go,
docs/convenio-municipal.md at 09ba471 (checked there against produção restrita, 2026-09-30).
A municipality issues through the SEFIN Nacional when `aderenteEmissorNacional` is 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests

PRODUCAO = "https://adn.nfse.gov.br/parametrizacao"
HOMOLOGACAO = "https://adn.producaorestrita.nfse.gov.br/parametrizacao"


class ParametrizacaoUnavailable(RuntimeError):
    """The service gave no usable answer (network, 5xx, an unreadable body)."""


@dataclass(frozen=True, slots=True)
class Convenio:
    """A municipality's agreement with the national system, as the ADN answers it."""

    municipio: str
    active: bool
    emissor_nacional: bool  # issues through the SEFIN Nacional (the national API)
    ambiente_nacional: bool  # shares its NFS-e with the ADN
    mensagem: str


def _flag(values: dict[str, Any], name: str) -> bool:
    return values.get(name) in (1, "1", True)


def convenio(
    session: requests.Session, base_url: str, municipio: str, timeout: float = 15.0
) -> Convenio:
    """The agreement of `municipio` (IBGE code); ParametrizacaoUnavailable when undecided."""
    try:
        answer = session.get(f"{base_url.rstrip('/')}/{municipio}/convenio", timeout=timeout)
        body = answer.json() if answer.content else {}
    except (requests.RequestException, ValueError) as exc:
        raise ParametrizacaoUnavailable(f"{municipio}: {exc}") from exc
    if not isinstance(body, dict):
        raise ParametrizacaoUnavailable(f"{municipio}: the answer is not a JSON object")
    mensagem = str(body.get("mensagem") or "")
    parametros = body.get("parametrosConvenio")
    if answer.status_code == 404 and parametros is None and mensagem:
        return Convenio(municipio, False, False, False, mensagem)
    if answer.status_code != 200 or not isinstance(parametros, dict):
        raise ParametrizacaoUnavailable(f"{municipio}: HTTP {answer.status_code} {mensagem}")
    return Convenio(
        municipio,
        True,
        _flag(parametros, "aderenteEmissorNacional"),
        _flag(parametros, "aderenteAmbienteNacional"),
        mensagem,
    )
