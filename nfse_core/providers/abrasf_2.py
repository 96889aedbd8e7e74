"""The ABRASF 2.x plug-in (nfse_core.providers.plugin): GerarNfseEnvio, XMLDSig, SOAP dialects.

One plug-in serves ABRASF 2.01 to 2.04 (`VERSIONS`) in every provider family the registry
describes (nfse_core.providers.dialect): the document of the family's DocumentForm from
nfse_core.xml.builder, checked against that version's XSD in that namespace
(nfse_core.xml.validate); the signing algorithms, Reference URI and X509Data form of the
registry entry; and the SOAP client of nfse_core.providers.abrasf, which speaks the family's
dialect. Importing this module loads no transport (EmitFn imports it for `document`): `connect`
does.
"""

from __future__ import annotations

from datetime import date
from functools import cache
from typing import TYPE_CHECKING

from nfse_core.providers.plugin import SigningProfile
from nfse_core.xml.builder import build_gerar_nfse_envio, to_bytes, unsupported_fields
from nfse_core.xml.forms import PLAIN_2_04, DocumentForm
from nfse_core.xml.validate import validate_rps_document

if TYPE_CHECKING:
    import requests

    from nfse_core.domain.errors import FieldError
    from nfse_core.domain.models import InvoiceRequest
    from nfse_core.domain.rps import RpsIdentity
    from nfse_core.providers.abrasf import AbrasfSoapClient
    from nfse_core.providers.plugin import RequestSigner
    from nfse_core.providers.port import ConsultaResult, GerarNfseResult, RpsKey
    from nfse_core.providers.registry import ProviderConfig, ResolvedProvider

VERSIONS = frozenset({"2.01", "2.02", "2.03", "2.04"})


class AbrasfDocument:
    """The unsigned GerarNfseEnvio of one RPS in one family's form, XSD-validated."""

    def __init__(self, form: DocumentForm = PLAIN_2_04) -> None:
        self.form = form

    @property
    def standard(self) -> str:
        return f"abrasf-{self.form.version}"

    def unsupported(self, request: InvoiceRequest) -> list[FieldError]:
        """What the form's version has no place for (an LC 116 item its XSD does not enumerate,
        the IBS/CBS of the tax reform, a field the version lacks): nfse_core.xml.builder."""
        return unsupported_fields(request, self.form)

    def build_document(
        self, request: InvoiceRequest, rps: RpsIdentity, invoice_id: str, emitted_on: date
    ) -> bytes:
        document = build_gerar_nfse_envio(request, rps, invoice_id, emitted_on, self.form)
        validate_rps_document(document, self.form)
        return to_bytes(document)


DOCUMENT = AbrasfDocument()


@cache
def document(environment: str = "homologacao", form: DocumentForm | None = None) -> AbrasfDocument:
    """The document of a family's form (the same in every environment: ABRASF documents do not
    name theirs)."""
    del environment
    return DOCUMENT if form is None or form == PLAIN_2_04 else AbrasfDocument(form)


def signing_profile(config: ProviderConfig) -> SigningProfile:
    """The algorithms the registry entry names (rsa-sha1/sha1 unless it says otherwise), with its
    family's Reference URI and X509Data forms."""
    return SigningProfile(
        config.signature_algorithm,
        config.digest_algorithm,
        reference_uri=config.dialect.reference_uri,
        x509=config.dialect.x509,
    )


class AbrasfAdapter(AbrasfDocument):
    """One municipality's ABRASF provider: GerarNfse to issue, ConsultarNfsePorRps to consult,
    over the SOAP client built for its registry entry (its family's dialect)."""

    def __init__(self, config: ProviderConfig, client: AbrasfSoapClient) -> None:
        super().__init__(config.dialect.form)
        self._config = config
        self._client = client

    @property
    def signing_profile(self) -> SigningProfile:
        return signing_profile(self._config)

    @property
    def max_call_seconds(self) -> float:
        return self._client.max_call_seconds

    @property
    def settle_seconds(self) -> float:
        return self._client.settle_seconds

    def issue(self, signed: bytes) -> GerarNfseResult:
        return self._client.gerar_nfse(signed)

    def consult(self, rps: RpsKey) -> ConsultaResult:
        return self._client.consultar_nfse_por_rps(rps)


def connect(
    provider: ResolvedProvider, session: requests.Session, sign: RequestSigner | None = None
) -> AbrasfAdapter:
    """The adapter of one municipality: the SOAP client for its registry entry on `session`;
    `sign` signs the consults of a family that wants them signed."""
    from nfse_core.providers.abrasf import AbrasfSoapClient  # noqa: PLC0415 - EmitFn: no transport

    client = AbrasfSoapClient.for_provider(provider, session=session, sign=sign)
    return AbrasfAdapter(provider.config, client)
