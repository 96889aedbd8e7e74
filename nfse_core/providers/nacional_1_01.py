"""The NFS-e Nacional 1.01 plug-in (nfse_core.providers.plugin): DPS, XMLDSig, REST + mTLS.

Composes the DPS of nfse_core.providers.nacional.document (built from the request, checked
against nfelib's DPS v1.01 XSD), the signing algorithms of the registry entry, and the SEFIN
Nacional client of nfse_core.providers.nacional.transport: POST /nfse to issue, GET /dps/{id}
then GET /nfse/{chave} to consult. One adapter serves every municipality that adheres to the
national system; the registry's endpoint of a nacional entry is the API's base URL
(".../SefinNacional"). Importing this module loads no transport (EmitFn imports it for
`DOCUMENT`): `connect` does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from nfse_core.providers.nacional.document import NacionalDocument
from nfse_core.providers.nacional.dps import AMBIENTE_HOMOLOGACAO, AMBIENTE_PRODUCAO
from nfse_core.providers.plugin import SigningProfile, standard_key

if TYPE_CHECKING:
    import requests

    from nfse_core.providers.nacional.transport import NacionalClient
    from nfse_core.providers.port import ConsultaResult, GerarNfseResult, RpsKey
    from nfse_core.providers.registry import ProviderConfig, ResolvedProvider
    from nfse_core.xml.signature_names import DigestAlgorithmName, SignatureAlgorithmName

STANDARD = standard_key("NACIONAL", "1.01")
# The service's OpenAPI document and the Manual dos Contribuintes name only "XMLDSIG
# (https://www.w3.org/TR/xmldsig-core/)" with the emitter's ICP-Brasil certificate; RSA-SHA256
# with a SHA-256 digest is what integrators report the service accepting. A registry entry that
# names its algorithms overrides this default.
DEFAULT_SIGNATURE_ALGORITHM: Final[SignatureAlgorithmName] = "rsa-sha256"
DEFAULT_DIGEST_ALGORITHM: Final[DigestAlgorithmName] = "sha256"

DOCUMENT = NacionalDocument()
_DOCUMENTS = {
    "producao": NacionalDocument(AMBIENTE_PRODUCAO),
    "homologacao": DOCUMENT,
}


def document(environment: str, form: object = None) -> NacionalDocument:
    """The DPS for an environment: tpAmb 1 in producao, 2 (produção restrita) otherwise; what
    EmitFn builds (nfse_core.providers.plugin.document_of) for its registry's environment. The
    DPS has one form (`form`, an ABRASF family's document form, does not apply)."""
    del form
    return _DOCUMENTS.get(environment, DOCUMENT)


def signing_profile(config: ProviderConfig) -> SigningProfile:
    """The algorithms the registry entry names; rsa-sha256/sha256 where it names none (the
    registry's own defaults are ABRASF's rsa-sha1/sha1, so only fields set count)."""
    named = config.model_fields_set
    return SigningProfile(
        config.signature_algorithm
        if "signature_algorithm" in named
        else DEFAULT_SIGNATURE_ALGORITHM,
        config.digest_algorithm if "digest_algorithm" in named else DEFAULT_DIGEST_ALGORITHM,
    )


class NacionalAdapter(NacionalDocument):
    """The national system for one municipality's entry: issue = POST /nfse, consult = GET by
    the DPS identifier, over the client built for the entry. Its DPS carries the tpAmb of the
    environment it talks to (1 produção, 2 produção restrita)."""

    def __init__(
        self, config: ProviderConfig, client: NacionalClient, ambiente: int = AMBIENTE_HOMOLOGACAO
    ) -> None:
        super().__init__(ambiente)
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
        return self._client.emitir(signed)

    def consult(self, rps: RpsKey) -> ConsultaResult:
        return self._client.consultar_dps(rps)


def connect(
    provider: ResolvedProvider, session: requests.Session, sign: object = None
) -> NacionalAdapter:
    """The adapter of one municipality: the SEFIN Nacional client for its entry on `session`
    (a session carrying the company's certificate: the API authenticates with mutual TLS). The
    API signs nothing beyond the DPS the worker stores (`sign` is not used)."""
    del sign
    from nfse_core.providers.nacional.transport import NacionalClient  # noqa: PLC0415

    client = NacionalClient.for_provider(provider, session=session)
    ambiente = AMBIENTE_PRODUCAO if provider.environment == "producao" else AMBIENTE_HOMOLOGACAO
    return NacionalAdapter(provider.config, client, ambiente)
