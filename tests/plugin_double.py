"""A test-only provider plug-in: a second standard, found by the same lookup as a real one.

`installed()` registers the module `nfse_core.providers.test_standard_1_0` (standard
TEST-STANDARD, version 1.0) in sys.modules for the duration of a `with`, so that the registry
accepts entries naming it and `plugin.document_of` finds its document. Its document marks the
standard and the values it was built from, so a test can tell it from an ABRASF RPS.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

from nfse_core.domain.errors import FieldError
from nfse_core.domain.models import InvoiceRequest
from nfse_core.domain.rps import RpsIdentity
from nfse_core.providers.plugin import document_of, module_name, standard_key

STANDARD = "TEST-STANDARD"
VERSION = "1.0"
KEY = standard_key(STANDARD, VERSION)
MODULE = module_name(KEY)


@dataclass(frozen=True, slots=True)
class MarkedDocument:
    """The test standard's document: one element naming the standard and its inputs."""

    standard: str = KEY

    def unsupported(self, request: InvoiceRequest) -> list[FieldError]:
        """The test standard lacks one LC 116 item, 17.25, as an older schema would."""
        if request.item_lista_servico == "17.25":
            return [FieldError("itemListaServico", f"not in {KEY}")]
        return []

    def build_document(
        self, request: InvoiceRequest, rps: RpsIdentity, invoice_id: str, emitted_on: date
    ) -> bytes:
        return (
            f'<TestDocument standard="{KEY}" municipio="{request.municipio}"'
            f' rps="{rps.serie}-{rps.numero}" invoice="{invoice_id}" on="{emitted_on}"/>'
        ).encode()


@contextlib.contextmanager
def installed() -> Iterator[ModuleType]:
    """The test standard's module, importable as nfse_core.providers.test_standard_1_0."""
    module = ModuleType(MODULE, "A test-only provider plug-in.")
    module.__spec__ = ModuleSpec(MODULE, None)
    module.DOCUMENT = MarkedDocument()  # type: ignore[attr-defined]
    sys.modules[MODULE] = module
    try:
        yield module
    finally:
        del sys.modules[MODULE]
        document_of.cache_clear()


def entry(name: str, **fields: Any) -> dict[str, Any]:
    """A registry entry (overlay `municipios` value) whose standard is the test standard."""
    return {
        "name": name,
        "standard": STANDARD,
        "version": VERSION,
        "endpoints": {
            "producao": f"https://{name}.example.invalid/nfse",
            "homologacao": f"https://homologacao.{name}.example.invalid/nfse",
        },
        "example": True,
        **fields,
    }
