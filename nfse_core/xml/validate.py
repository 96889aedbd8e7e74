"""Checks a built ABRASF document against its version's compiled XSD (the hot path: every POST)."""

from __future__ import annotations

from lxml import etree

from nfse_core.domain.errors import FieldError, SchemaInvalid
from nfse_core.xml.forms import ABRASF_DOCUMENT_NS, PLAIN_2_04, DocumentForm
from nfse_core.xml.schema import SCHEMA_LOCK, schema_for

SCHEMA_INVALID_MESSAGE = "The RPS document does not satisfy the ABRASF 2.04 schema"


def schema_invalid_message(form: DocumentForm = PLAIN_2_04) -> str:
    """The message of SchemaInvalid for a document of `form`: it names the version (and the
    namespace when it is not ABRASF's)."""
    message = f"The RPS document does not satisfy the ABRASF {form.version} schema"
    if form.namespace != ABRASF_DOCUMENT_NS:
        message += f" in the namespace {form.namespace}"
    return message


def validate_rps_document(element: etree._Element, form: DocumentForm = PLAIN_2_04) -> None:
    """Raise SchemaInvalid with one FieldError per XSD message when `element` is not valid
    against the XSD of `form` (nfse_core.xml.schema.schema_for)."""
    schema = schema_for(form)
    # lxml keeps the messages of the last run on the shared validator (error_log), so reading
    # them must not interleave with another thread's run (the worker may validate from threads).
    with SCHEMA_LOCK:
        if schema.validate(element):
            return
        errors = [(e.path, e.message) for e in schema.error_log]  # type: ignore[attr-defined]
    details = [FieldError(_readable_path(element, path), message) for path, message in errors]
    raise SchemaInvalid(schema_invalid_message(form), details)


def _readable_path(element: etree._Element, path: str | None) -> str:
    """The element path with local names (GerarNfseEnvio/Rps/.../Aliquota).

    libxml2 writes elements of a default (unprefixed) namespace as positional steps such as
    `/*/*[3]/*`; evaluated on the document they name exactly one node, whose ancestry gives
    a path a person can read. Anything that does not resolve so is returned unchanged.
    """
    if not path or element.getparent() is not None:
        return path or ""
    try:
        found = element.getroottree().xpath(path)
    except etree.XPathError:
        return path
    if not isinstance(found, list) or len(found) != 1 or not isinstance(found[0], etree._Element):
        return path
    steps: list[str] = []
    node: etree._Element | None = found[0]
    while node is not None:
        name = etree.QName(node).localname
        parent = node.getparent()
        if parent is not None:
            same = [sibling for sibling in parent if sibling.tag == node.tag]
            if len(same) > 1:
                name = f"{name}[{same.index(node) + 1}]"
        steps.append(name)
        node = parent
    return "/".join(reversed(steps))
