"""The ABRASF 2.x XSDs of nfselib-legacy, per version and namespace, compiled once per process.

Nothing is read or compiled at import: each schema is compiled on its first use and cached per
(version, namespace, DataEmissao type). Which file serves which version (nfselib-legacy's
schemas/NFSe/, read 2026-12-02):

- 2.01: ABRASF/nfse_v2_01.xsd (targetNamespace http://www.abrasf.org.br/nfse.xsd);
- 2.02: ABRASF/nfse_v2_02.xsd (same namespace); Betha's 2.02 is BETHA/nfse_v202.xsd, the same
  schema in http://www.betha.com.br/e-nota-contribuinte-ws;
- 2.03: DESENVOLVECIDADE/nfsev203.xsd (byte-identical to INDAIATUBA_SP/"nfse_v2-03 2016.xsd"):
  its tsItemListaServico is the list ABRASF published (the 193 values 2.04 repeats), where
  TIPLAN/nfse_v2-03.xsd adds 01.09, 06.06, 14.14, 16.02, 17.25, 25.05 and 99.99 and
  SMARAPD/nfse_v2-03.xsd adds those items less 99.99 and Signature elements of its own;
- 2.04: ISSNET/nfse_v2-04.xsd. The ABRASF folder's nfse_v2_04.xsd has no targetNamespace (and
  a stray "1.07" in tsItemListaServico); the ISSNET copy is the same schema in the ABRASF
  namespace.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Final

from lxml import etree

from nfse_core.xml.forms import (
    ABRASF_DOCUMENT_NS,
    BETHA_DOCUMENT_NS,
    PLAIN_2_04,
    AbrasfVersion,
    DateFormat,
    DocumentForm,
)

NFSE_NS = ABRASF_DOCUMENT_NS
DSIG_NS = "http://www.w3.org/2000/09/xmldsig#"
XSD_NS: Final = "http://www.w3.org/2001/XMLSchema"
_XS = f"{{{XSD_NS}}}"

# lxml keeps the messages of a schema's last run on the shared validator (error_log), so a run
# and the reading of its messages must not interleave with another thread's run.
SCHEMA_LOCK = threading.Lock()


def nfse_path(path: str) -> str:
    """The Clark-notation ElementPath of `path` ("Rps/InfDeclaracaoPrestacaoServico"), every
    step in the ABRASF namespace; one step is a tag name."""
    return qualified_path(NFSE_NS, path)


def qualified_path(namespace: str, path: str) -> str:
    """`path` ("Rps/InfDeclaracaoPrestacaoServico") with every step in `namespace`."""
    return "/".join(f"{{{namespace}}}{step}" for step in path.split("/"))


_DISTRIBUTION = "nfselib-legacy"
# The namespaced ABRASF 2.04 XSD (see the module docstring).
_SCHEMA_FILE = "schemas/NFSe/ISSNET/nfse_v2-04.xsd"

# The XSD shipped for a version in a namespace; a pair not listed gets the version's ABRASF
# XSD (the NFSE_NS entry) with its namespace rewritten (see `schema_for`).
SHIPPED_SCHEMAS: Final[dict[tuple[AbrasfVersion, str], str]] = {
    ("2.01", NFSE_NS): "schemas/NFSe/ABRASF/nfse_v2_01.xsd",
    ("2.02", NFSE_NS): "schemas/NFSe/ABRASF/nfse_v2_02.xsd",
    ("2.03", NFSE_NS): "schemas/NFSe/DESENVOLVECIDADE/nfsev203.xsd",
    ("2.04", NFSE_NS): _SCHEMA_FILE,
    ("2.02", BETHA_DOCUMENT_NS): "schemas/NFSe/BETHA/nfse_v202.xsd",
}


def _installed(file: str) -> Path:
    path = Path(str(metadata.distribution(_DISTRIBUTION).locate_file(file)))
    if not path.is_file():
        raise FileNotFoundError(f"XSD not at {path}; is {_DISTRIBUTION} installed?")
    return path


@cache
def schema_path() -> Path:
    """Path of the namespaced ABRASF 2.04 XSD inside the installed nfselib-legacy."""
    return _installed(_SCHEMA_FILE)


def _parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True)


@cache
def abrasf_schema() -> etree.XMLSchema:
    """The compiled ABRASF 2.04 XSD (lxml, libxml2): the hot-path validator, built once per
    process; `schema_for(PLAIN_2_04)` is this same object."""
    return etree.XMLSchema(etree.parse(str(schema_path()), _parser()))


def schema_source(version: AbrasfVersion, namespace: str) -> tuple[Path, bool]:
    """The XSD file of `version` in `namespace`, and whether its namespace must be rewritten."""
    shipped = SHIPPED_SCHEMAS.get((version, namespace))
    if shipped is not None:
        return _installed(shipped), False
    return _installed(SHIPPED_SCHEMAS[(version, NFSE_NS)]), True


_UNSAFE_NAMESPACE = re.compile(r'[\s"<>&\']')


@cache
def schema_tree(
    version: AbrasfVersion, namespace: str, date_format: DateFormat = "date"
) -> etree._ElementTree:
    """The XSD document of a form (see `schema_for`), before compiling; cached."""
    if not namespace or _UNSAFE_NAMESPACE.search(namespace):
        raise ValueError(f"namespace {namespace!r} cannot be an XSD targetNamespace")
    path, rewrite = schema_source(version, namespace)
    data = path.read_bytes()
    if rewrite:
        for attribute in ("targetNamespace", "xmlns"):
            old = f'{attribute}="{NFSE_NS}"'.encode()
            if data.count(old) != 1:
                raise LookupError(f"{path} does not declare {attribute} once")
            data = data.replace(old, f'{attribute}="{namespace}"'.encode())
    # base_url: the xmldsig import next to the file resolves from the file's own folder.
    root = etree.fromstring(data, _parser(), base_url=str(path))
    if date_format == "datetime":
        _rps_data_emissao_as_datetime(root, path)
    return etree.ElementTree(root)


def _rps_data_emissao_as_datetime(root: etree._Element, path: Path) -> None:
    found = root.findall(
        f"{_XS}complexType[@name='tcInfRps']/{_XS}sequence/{_XS}element[@name='DataEmissao']"
    )
    if len(found) != 1:
        raise LookupError(f"{path} has no tcInfRps/DataEmissao")
    prefix = next((p for p, uri in root.nsmap.items() if uri == XSD_NS and p), None)
    if prefix is None:
        raise LookupError(f"{path} declares no prefix for the XML Schema namespace")
    found[0].set("type", f"{prefix}:dateTime")


@cache
def _compiled(version: AbrasfVersion, namespace: str, date_format: DateFormat) -> etree.XMLSchema:
    if (version, namespace, date_format) == (
        PLAIN_2_04.version,
        PLAIN_2_04.namespace,
        PLAIN_2_04.date_format,
    ):
        return abrasf_schema()
    return etree.XMLSchema(schema_tree(version, namespace, date_format))


def schema_for(form: DocumentForm = PLAIN_2_04) -> etree.XMLSchema:
    """The compiled XSD of the documents of `form`, once per process per (version, namespace,
    date format).

    A namespace with a shipped XSD of the version (SHIPPED_SCHEMAS) gets that file. Any other
    namespace gets the version's ABRASF XSD with its targetNamespace and default namespace
    rewritten, in memory, to the form's namespace: the families that moved the ABRASF
    documents to a namespace of their own kept the ABRASF types, and nfselib-legacy ships no
    copy of their XSD, so this is the closest check there is (and it never touches the
    installed files).

    A form whose DataEmissao is a dateTime ("datetime") gets tcInfRps/DataEmissao typed
    xsd:dateTime: every ABRASF 2.0x XSD types it xsd:date, and a family that sends a dateTime
    there has its own XSD saying so (e.g. ISSONLINE4R/nfsev20.xsd); the rest of the schema is
    the version's.
    """
    return _compiled(form.version, form.namespace, form.date_format)


def schema_errors(
    document: etree._Element | etree._ElementTree, form: DocumentForm = PLAIN_2_04
) -> list[str]:
    """Messages of every XSD violation in the document; empty when it is valid."""
    schema = schema_for(form)
    with SCHEMA_LOCK:
        if schema.validate(document):
            return []
        return [f"line {e.line}: {e.message}" for e in schema.error_log]  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- facts of an XSD


_COLLAPSE = re.compile(r"[ \t\n\r]+")


@dataclass(frozen=True, slots=True)
class SimpleFacets:
    """The facets of the simple type of one element, as a version's XSD declares them."""

    type_name: str
    base: str | None = None
    enumeration: frozenset[str] | None = None
    length: int | None = None
    min_length: int | None = None
    max_length: int | None = None
    patterns: tuple[str, ...] = ()
    total_digits: int | None = None
    fraction_digits: int | None = None
    min_inclusive: Decimal | None = None
    max_inclusive: Decimal | None = None
    collapse: bool = False

    def problem(self, text: str) -> str | None:
        """Why `text` is not a value of this type (the facets checked here), or None."""
        value = _COLLAPSE.sub(" ", text).strip(" ") if self.collapse else text
        if self.enumeration is not None and value not in self.enumeration:
            return f"{value!r} is not one of the values of {self.type_name}"
        problem = self._length_problem(len(value))
        if problem is None:
            problem = next(
                (
                    f"{value!r} does not match the pattern of {self.type_name}"
                    for pattern in self.patterns
                    if re.fullmatch(f"(?:{pattern})", value) is None
                ),
                None,
            )
        if problem is None and (self.total_digits is not None or self.fraction_digits is not None):
            problem = self._decimal_problem(value)
        return problem

    def _length_problem(self, size: int) -> str | None:
        if self.length is not None and size != self.length:
            return f"{self.type_name} holds exactly {self.length} characters, not {size}"
        if self.max_length is not None and size > self.max_length:
            return f"{self.type_name} holds at most {self.max_length} characters, not {size}"
        if self.min_length is not None and size < self.min_length:
            return f"{self.type_name} holds at least {self.min_length} characters"
        return None

    def _decimal_problem(self, value: str) -> str | None:
        try:
            number = Decimal(value)
        except InvalidOperation:
            return f"{value!r} is not a number"
        total, fraction = _digits(number)
        if self.fraction_digits is not None and fraction > self.fraction_digits:
            return f"{self.type_name} has at most {self.fraction_digits} decimal places: {value}"
        if self.total_digits is not None and total > self.total_digits:
            return f"{self.type_name} has at most {self.total_digits} digits: {value}"
        if self.min_inclusive is not None and number < self.min_inclusive:
            return f"{self.type_name} is at least {self.min_inclusive}: {value}"
        if self.max_inclusive is not None and number > self.max_inclusive:
            return f"{self.type_name} is at most {self.max_inclusive}: {value}"
        return None


def _digits(number: Decimal) -> tuple[int, int]:
    """(total digits, fraction digits) of a decimal's value, as XSD's facets count them:
    trailing zeros after the point and leading zeros do not count ("5.0000" has 1, 0)."""
    if number.is_zero():
        return 1, 0
    _, digits, exponent = number.normalize().as_tuple()
    assert isinstance(exponent, int)
    if exponent >= 0:
        return len(digits) + exponent, 0
    return max(len(digits), -exponent), -exponent


class XsdFacts:
    """Reads one version's XSD: which elements a complex type has, and their simple types."""

    def __init__(self, tree: etree._ElementTree) -> None:
        root = tree.getroot()
        self._complex = {n.get("name"): n for n in root.findall(f"{_XS}complexType")}
        self._simple = {n.get("name"): n for n in root.findall(f"{_XS}simpleType")}
        # element() runs for every field of every request: its answers are kept (a few dozen).
        self._found: dict[tuple[str, tuple[str, ...]], SimpleFacets | None] = {}

    def has_complex_element(self, complex_type: str, name: str) -> bool:
        return self._child_type(complex_type, name) is not None

    def element(self, complex_type: str, path: tuple[str, ...]) -> SimpleFacets | None:
        """The facets of the element at `path` under `complex_type`; None when the XSD has no
        such element. An element of a complex or built-in type has no facets to check."""
        key = (complex_type, path)
        if key not in self._found:
            self._found[key] = self._lookup(complex_type, path)
        return self._found[key]

    def _lookup(self, complex_type: str, path: tuple[str, ...]) -> SimpleFacets | None:
        current = complex_type
        type_name: str | None = None
        for index, step in enumerate(path):
            type_name = self._child_type(current, step)
            if type_name is None:
                return None
            if index < len(path) - 1:
                current = type_name
        assert type_name is not None
        return self._facets(type_name)

    def _child_type(self, complex_type: str, name: str) -> str | None:
        node = self._complex.get(complex_type)
        if node is None:
            return None
        for element in node.iter(f"{_XS}element"):
            if element.get("name") == name:
                return _local(element.get("type", ""))
        return None

    def _facets(self, type_name: str) -> SimpleFacets:
        node = self._simple.get(type_name)
        restriction = None if node is None else node.find(f"{_XS}restriction")
        if restriction is None:
            return SimpleFacets(type_name)
        values: dict[str, list[str]] = {}
        for facet in restriction:
            if isinstance(facet.tag, str):
                values.setdefault(etree.QName(facet).localname, []).append(facet.get("value", ""))

        def number(name: str) -> int | None:
            return int(values[name][0]) if name in values else None

        def decimal(name: str) -> Decimal | None:
            return Decimal(values[name][0]) if name in values else None

        return SimpleFacets(
            type_name=type_name,
            base=restriction.get("base"),
            enumeration=frozenset(values["enumeration"]) if "enumeration" in values else None,
            length=number("length"),
            min_length=number("minLength"),
            max_length=number("maxLength"),
            patterns=tuple(values.get("pattern", ())),
            total_digits=number("totalDigits"),
            fraction_digits=number("fractionDigits"),
            min_inclusive=decimal("minInclusive"),
            max_inclusive=decimal("maxInclusive"),
            collapse=values.get("whiteSpace", [""])[0] == "collapse",
        )


def _local(qname: str) -> str:
    return qname.rsplit(":", 1)[-1]


@cache
def xsd_facts(version: AbrasfVersion, namespace: str = NFSE_NS) -> XsdFacts:
    """The facts of the XSD `schema_for` compiles for `version` in `namespace`; cached."""
    return XsdFacts(schema_tree(version, namespace))
