"""The ABRASF 2.04 plug-in (nfse_core.providers.plugin): GerarNfseEnvio, XMLDSig, SOAP.

Composes the existing pieces: the document from nfse_core.xml.builder checked against the
ABRASF 2.04 XSD (nfse_core.xml.validate), the signing algorithms of the registry entry, and the
SOAP client of nfse_core.providers.abrasf for the transport and the reading of its answers.
Importing this module loads no transport (EmitFn imports it for `DOCUMENT`): `connect` does.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

from nfse_core.domain.errors import FieldError
from nfse_core.domain.lc116 import abrasf_2_04_items
from nfse_core.providers.plugin import SigningProfile, standard_key
from nfse_core.xml.builder import build_gerar_nfse_envio, to_bytes
from nfse_core.xml.validate import validate_rps_document

if TYPE_CHECKING:
    import requests

    from nfse_core.domain.models import InvoiceRequest
    from nfse_core.domain.rps import RpsIdentity
    from nfse_core.providers.abrasf import AbrasfSoapClient
    from nfse_core.providers.port import ConsultaResult, GerarNfseResult, RpsKey
    from nfse_core.providers.registry import ProviderConfig, ResolvedProvider

STANDARD = standard_key("ABRASF", "2.04")


class AbrasfDocument:
    """The unsigned GerarNfseEnvio of one RPS, XSD-validated."""

    @property
    def standard(self) -> str:
        return STANDARD

    def unsupported(self, request: InvoiceRequest) -> list[FieldError]:
        """tsItemListaServico of the 2.04 XSD enumerates the LC 116 list as it stood in 2015:
        the items added since (LC 157/2016, LC 183/2021) fail its check. Nor has the 2.04
        document a place for the IBS/CBS of the tax reform."""
        problems: list[FieldError] = []
        item = request.item_lista_servico
        if item not in abrasf_2_04_items():
            problems.append(
                FieldError(
                    "itemListaServico",
                    f"item {item} is not in the service list of {STANDARD}, the standard of "
                    f"the provider of municipality {request.municipio}",
                )
            )
        if request.ibs_cbs is not None:
            problems.append(
                FieldError(
                    "ibsCbs",
                    f"{STANDARD}, the standard of the provider of municipality "
                    f"{request.municipio}, has no IBS/CBS group (NFS-e Nacional's DPS has)",
                )
            )
        return problems

    def build_document(
        self, request: InvoiceRequest, rps: RpsIdentity, invoice_id: str, emitted_on: date
    ) -> bytes:
        document = build_gerar_nfse_envio(request, rps, invoice_id, emitted_on=emitted_on)
        validate_rps_document(document)
        return to_bytes(document)


DOCUMENT = AbrasfDocument()


def signing_profile(config: ProviderConfig) -> SigningProfile:
    """The algorithms the registry entry names (rsa-sha1/sha1 unless it says otherwise)."""
    return SigningProfile(config.signature_algorithm, config.digest_algorithm)


class AbrasfAdapter(AbrasfDocument):
    """One municipality's ABRASF 2.04 provider: GerarNfse to issue, ConsultarNfsePorRps to
    consult, over the SOAP client built for its registry entry."""

    def __init__(self, config: ProviderConfig, client: AbrasfSoapClient) -> None:
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


def connect(provider: ResolvedProvider, session: requests.Session) -> AbrasfAdapter:
    """The adapter of one municipality: the SOAP client for its registry entry on `session`."""
    from nfse_core.providers.abrasf import AbrasfSoapClient  # noqa: PLC0415 - EmitFn: no transport

    client = AbrasfSoapClient.for_provider(provider, session=session)
    return AbrasfAdapter(provider.config, client)
