"""The provider plug-in: what one fiscal standard (and version) brings to the platform.

A standard is one module, `nfse_core.providers.<standard>` with `-` and `.` written `_`
(`nacional-1.01` -> `nfse_core.providers.nacional_1_01`), or one module for a whole major
version (`abrasf-2.02` -> `nfse_core.providers.abrasf_2` when there is no `abrasf_2_02`), plus
registry data naming it (the `standard` and `version` of a profile or municipality in
providers.json). The module exposes `document(environment, form)`, its `ProviderDocument` (or
one `DOCUMENT`); `signing_profile(config)`, the `SigningProfile` of a registry entry; and
`connect(provider, session, sign)`, the `ProviderAdapter` of one resolved municipality (its
transport; `sign` signs the requests its provider wants signed beyond the stored document).

The document side is all EmitFn needs: it builds and XSD-validates the document of the standard
the municipality uses before anything reaches S3. The adapter adds the signing profile and the
transport (SOAP dialect, or REST with mutual TLS) and sorts every answer into issued, rejected,
not found or undecided, as values (nfse_core.providers.port), never exceptions.

How the standards map onto `issue` and `consult`:
- ABRASF 2.01-2.04, synchronous (GerarNfse), in each provider family's dialect
  (nfse_core.providers.dialect): `issue` sends the signed GerarNfseEnvio and answers Issued or
  Rejected, or TemporaryFailure when nothing definitive came back; `consult` is
  ConsultarNfsePorRps (signed where the family wants it).
- NFS-e Nacional (REST, synchronous): `issue` POSTs the signed DPS over mutual TLS and the answer
  is the NFS-e (Issued) or the refusal (Rejected); `consult` GETs by the DPS identifier, a 404
  in the API's own terms being "not found".
- ABRASF, asynchronous lot (RecepcionarLoteRps): `issue` sends the lot and, once the provider
  answers with a protocol, answers TemporaryFailure (nothing is decided yet; the protocol is in
  the reason); `consult` is ConsultarNfsePorRps (or the lot's situation then its NFS-e), so the
  issuance service's "consult after any earlier try" finishes the invoice, and `settle_seconds`
  covers the provider's processing time before "not found" may count.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from functools import cache
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import requests

    from nfse_core.domain.errors import FieldError
    from nfse_core.domain.models import InvoiceRequest
    from nfse_core.domain.rps import RpsIdentity
    from nfse_core.providers.port import ConsultaResult, GerarNfseResult, RpsKey
    from nfse_core.providers.registry import ProviderConfig, ResolvedProvider
    from nfse_core.xml.forms import DocumentForm
    from nfse_core.xml.signature_names import (
        DigestAlgorithmName,
        ReferenceUri,
        SignatureAlgorithmName,
        X509Form,
    )

DEFAULT_STANDARD = "abrasf-2.04"

# Signs a request document for a prestador (CNPJ) of a municipality (IBGE): the consults some
# ABRASF families want signed (nfse_core.providers.signer.RpsSigner).
RequestSigner = Callable[[str, str, bytes], bytes]


def standard_key(standard: str, version: str) -> str:
    """The plug-in's name for a registry entry's standard and version: ABRASF, 2.04 ->
    abrasf-2.04."""
    return f"{standard}-{version}".lower()


def module_name(standard: str) -> str:
    """A standard's own plug-in module: nacional-1.01 -> nfse_core.providers.nacional_1_01."""
    return "nfse_core.providers." + standard.replace("-", "_").replace(".", "_")


def major_module_name(standard: str) -> str:
    """The module of a standard's major version: abrasf-2.02 -> nfse_core.providers.abrasf_2."""
    name, _, version = standard.partition("-")
    return f"nfse_core.providers.{name}_{version.split('.')[0]}"


def _find_module(standard: str) -> str | None:
    for name in (module_name(standard), major_module_name(standard)):
        try:
            if importlib.util.find_spec(name) is not None:
                return name
        except ModuleNotFoundError:
            continue
    return None


def plugin_exists(standard: str) -> bool:
    """Whether a plug-in serves `standard` (its own module or its major version's), found
    without importing it (EmitFn's registry check stays light). Which versions a major
    version's module serves is the registry's check (an ABRASF dialect's version)."""
    return _find_module(standard) is not None


@dataclass(frozen=True, slots=True)
class SigningProfile:
    """How a provider wants a document signed: XMLDSig algorithm names of xml.signing, the
    Reference URI form ("id": `#Id` of the signed element; "empty": the whole document) and the
    X509Data form ("chain": the certificate and its chain; "single": the certificate alone, its
    base64 on one line)."""

    signature_algorithm: SignatureAlgorithmName
    digest_algorithm: DigestAlgorithmName
    reference_uri: ReferenceUri = "id"
    x509: X509Form = "chain"


class ProviderDocument(Protocol):
    """The document of one standard: built from the request and checked against its schema."""

    @property
    def standard(self) -> str: ...

    def unsupported(self, request: InvoiceRequest) -> list[FieldError]:
        """The fields of a valid request this standard cannot carry (an LC 116 item its
        schema does not enumerate, ...): EmitFn refuses them with a 422 before numbering."""
        ...

    def build_document(
        self, request: InvoiceRequest, rps: RpsIdentity, invoice_id: str, emitted_on: date
    ) -> bytes:
        """The unsigned document as stored and sent, already schema-validated (SchemaInvalid
        otherwise): a function of its arguments, so a resumed emit rebuilds the same bytes."""
        ...


class ProviderAdapter(ProviderDocument, Protocol):
    """One municipality's provider: its document, signing profile, transport and answers."""

    @property
    def signing_profile(self) -> SigningProfile: ...

    @property
    def max_call_seconds(self) -> float:
        """The longest one call can last: an absolute wall-clock deadline, enforced on the
        connection itself, so a send never outlives the lease that covers it."""
        ...

    @property
    def settle_seconds(self) -> float:
        """How long after a send ends the provider's consult may still not show its NFS-e
        (asynchronous processing, read replicas). "Not found" proves nothing before that."""
        ...

    def issue(self, signed: bytes) -> GerarNfseResult:
        """Send the signed document: Issued, Rejected, or TemporaryFailure (undecided)."""
        ...

    def consult(self, rps: RpsKey) -> ConsultaResult:
        """Ask for the NFS-e of an RPS: Issued, not found, or TemporaryFailure (undecided)."""
        ...


def _plugin(standard: str) -> Any:
    if not plugin_exists(standard):
        raise LookupError(f"no provider plug-in for the standard {standard!r}")
    name = _find_module(standard)
    assert name is not None
    return importlib.import_module(name)


@cache
def document_of(
    standard: str = DEFAULT_STANDARD,
    environment: str = "homologacao",
    form: DocumentForm | None = None,
) -> ProviderDocument:
    """The document side of a standard's plug-in (LookupError for a standard without one), for
    the registry's environment (NFS-e Nacional's tpAmb) and the municipality's document form
    (an ABRASF family's version, namespace and formats; None: the standard's own). A plug-in
    exposes `document(environment, form)`, or one `DOCUMENT`."""
    plugin = _plugin(standard)
    factory = getattr(plugin, "document", None)
    if not callable(factory):
        fixed: ProviderDocument = plugin.DOCUMENT
        return fixed
    document: ProviderDocument = factory(environment, form)
    return document


def signing_profile_of(config: ProviderConfig) -> SigningProfile:
    """The signing profile the plug-in of a registry entry's standard gives it."""
    plugin = _plugin(standard_key(config.standard, config.version))
    profile: SigningProfile = plugin.signing_profile(config)
    return profile


def connect(
    provider: ResolvedProvider, session: requests.Session, sign: RequestSigner | None = None
) -> ProviderAdapter:
    """The adapter of a resolved municipality, its calls made on `session`; `sign` signs the
    requests its provider wants signed (a consult, for some ABRASF families)."""
    plugin = _plugin(standard_key(provider.config.standard, provider.config.version))
    adapter: ProviderAdapter = plugin.connect(provider, session, sign)
    return adapter
