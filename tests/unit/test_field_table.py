"""The README's "The invoice request, field by field" table lists exactly the request model's
fields (dotted JSON paths of InvoiceRequest and the models under it), and every ABRASF 2.04
element it names exists, at that path under InfDeclaracaoPrestacaoServico, in the XSD."""

from __future__ import annotations

import re
import types
import typing
from functools import cache
from pathlib import Path

import pytest
from lxml import etree
from pydantic import BaseModel

from nfse_core.domain.models import InvoiceRequest
from nfse_core.xml.schema import schema_path

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
XS = "{http://www.w3.org/2001/XMLSchema}"
ROOT_TYPE = "tcInfDeclaracaoPrestacaoServico"


def table_rows() -> dict[str, list[str]]:
    """JSON field -> the XSD paths its row names (none for "—")."""
    text = README.read_text(encoding="utf-8")
    section = re.search(r"^### The invoice request, field by field\n(.*?)(?=^#)", text, re.S | re.M)
    assert section, "README.md has no 'The invoice request, field by field' section"
    rows: dict[str, list[str]] = {}
    lines = [line for line in section.group(1).splitlines() if line.startswith("| `")]
    for line in lines:
        cells = [cell.strip() for cell in line.strip("|").split(" | ")]
        assert len(cells) == 4, line
        field = re.fullmatch(r"`([\w.]+)`", cells[0])
        assert field, line
        assert field.group(1) not in rows, f"{field.group(1)} is listed twice"
        rows[field.group(1)] = re.findall(r"`([\w/]+)`", cells[2])
        assert rows[field.group(1)] or cells[2].startswith("—"), line
    return rows


def _model_of(annotation: object) -> type[BaseModel] | None:
    """The pydantic model in a field's annotation (through Optional and Annotated), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _model_of(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        for argument in typing.get_args(annotation):
            found = _model_of(argument)
            if found is not None:
                return found
    return None


def model_fields(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Every field's JSON name (its alias), dotted under the objects that hold it."""
    names: set[str] = set()
    for name, info in model.model_fields.items():
        path = prefix + (info.alias or name)
        names.add(path)
        nested = _model_of(info.annotation)
        if nested is not None:
            names |= model_fields(nested, path + ".")
    return names


@cache
def xsd() -> etree._ElementTree:
    return etree.parse(str(schema_path()))


def _complex_type(name: str) -> etree._Element:
    found = xsd().getroot().find(f"{XS}complexType[@name='{name}']")
    assert found is not None, f"no complexType {name} in the XSD"
    return found


def xsd_path_exists(path: str) -> bool:
    """Each step is an element of the previous step's complex type (in its sequences and
    choices), starting from tcInfDeclaracaoPrestacaoServico."""
    type_name: str | None = ROOT_TYPE
    for step in path.split("/"):
        if type_name is None or ":" in type_name:
            return False  # a simple type (or an xsd: one) has no children
        candidates = _complex_type(type_name).iter(f"{XS}element")
        element = next((e for e in candidates if e.get("name") == step), None)
        if element is None:
            return False
        declared = element.get("type")
        is_complex = declared is not None and (
            xsd().getroot().find(f"{XS}complexType[@name='{declared}']") is not None
        )
        type_name = declared if is_complex else None
    return True


def test_the_table_lists_every_field_of_the_request_model() -> None:
    listed = set(table_rows())
    fields = model_fields(InvoiceRequest)
    assert fields - listed == set(), "fields missing from the README table"
    assert listed - fields == set(), "README table lists fields the model does not have"


def test_the_walk_reaches_the_nested_models() -> None:
    fields = model_fields(InvoiceRequest)
    assert {
        "tomador.endereco.cep",
        "tomador.enderecoExterior.codigoPais",
        "intermediario.cpfCnpj",
        "retencoes.csll",
    } <= fields


def test_every_element_named_exists_in_the_abrasf_2_04_xsd() -> None:
    paths = [path for paths in table_rows().values() for path in paths]
    assert len(paths) > 40
    assert [path for path in paths if not xsd_path_exists(path)] == []


def test_the_xsd_check_refuses_a_wrong_path() -> None:
    assert xsd_path_exists("Servico/Valores/ValorPis")
    assert not xsd_path_exists("Servico/ValorPis")
    assert not xsd_path_exists("Servico/Valores/ValorServicos/Extra")
    assert not xsd_path_exists("TomadorServico/Endereco/Pais")
