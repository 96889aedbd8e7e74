"""The codes and texts the simulator answers with, each with its source.

Sources (read 2026, copies kept by the public repository edusouza/nfse-emissor-go):
- ANEXO I (AnexoI-LeiautesRN_DPS_NFSe-SNNFSe v1.00 of 2025-12-26, sheet "RN DPS_NFS-e"): the
  business rules of the DPS and their codes (E0004, E0006, E0014, E0714, E0717, E0718).
- ANEXO IV (ANEXO_IV-ADN-SNNFSe v1.00 of 2025-12-16, the validation of the data area): the
  codes of the compressed data area (E1225, E1226, E1235). Integrators report the SEFIN
  answering the same codes to POST /nfse (E1226 "Estrutura descompactada mal formada", E1235
  "Falha no esquema XML do DF-e"), so the simulator uses them there too.
- Answers captured from produção restrita and quoted in public client tests (SefinNacional
  1.6.0, 2026): E2401 (GET /nfse/{chave}, unknown chave), E2404 (GET /dps/{id}, no NFS-e for the
  DPS), E2406 (a chave that is not 50 digits).
- RNG9999 "Erro não catalogado": what integrators report for a body without dpsXmlGZipB64.
- E6155: integrators report it for a DPS written with namespace prefixes (e.g. `ds:Signature`).

The E99xx codes are the simulator's own, outside the official tables, so that a test can tell
an injected outcome from a rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class Message:
    """One MensagemProcessamento: codigo, descricao and, when there is one, a complemento."""

    codigo: str
    descricao: str
    complemento: str | None = None

    def with_complemento(self, complemento: str) -> Message:
        return Message(self.codigo, self.descricao, complemento[:500])


# POST /nfse: the data area (ANEXO IV) and the request body.
UNCATALOGUED: Final = Message("RNG9999", "Erro não catalogado")
BASE64_FAILURE: Final = Message("E1225", "Falha na decodificação da base 64 da área de dados")
MALFORMED: Final = Message("E1226", "Estrutura descompactada mal formada.")
SCHEMA_FAILURE: Final = Message("E1235", "Falha no esquema XML do DF-e.")
NAMESPACE_PREFIX: Final = Message("E6155", "Xml declarado com prefixo de namespace.")

# POST /nfse: the DPS rules (ANEXO I, RN DPS_NFS-e).
ID_MISMATCH: Final = Message(
    "E0004",
    "Conteúdo do identificador informado na DPS difere da concatenação dos campos correspondentes.",
)
AMBIENTE_MISMATCH: Final = Message(
    "E0006",
    "Ambiente informado diverge do ambiente de recebimento para o qual o emitente enviou a DPS.",
)
DUPLICATE_DPS: Final = Message(
    "E0014",
    "Conjunto de Série, Número, Código do Município Emissor e CNPJ/CPF informado nesta DPS já"
    " existe em uma NFS-e gerada a partir de uma DPS enviada anteriormente.",
)
SIGNATURE_INVALID: Final = Message("E0714", "Arquivo enviado com erro na assinatura.")
SIGNATURE_MISSING: Final = Message(
    "E0717", "A assinatura é obrigatória quando for enviado para o Web Service."
)
SIGNER_NOT_EMITENTE: Final = Message(
    "E0718", "A assinatura deve ser feita com o certificado digital do emitente da DPS."
)

# The consults (captured answers, see above).
CHAVE_NOT_FOUND: Final = Message("E2401", "Chave de acesso não encontrada.")
DPS_NOT_FOUND: Final = Message(
    "E2404", "Não foi gerada uma NFS-e com o identificador de DPS informado"
)
CHAVE_INVALID: Final = Message("E2406", "A chave de acesso consultada deve conter 50 números.")
DPS_ID_INVALID: Final = Message("E9904", "Identificador de DPS inválido.")  # swagger: 400

# The simulator's own.
FORCED_REJECT: Final = Message(
    "E9901", "Rejeição simulada.", "Remova o marcador [sim:reject] de xDescServ."
)
CONSULT_FAILURE: Final = Message("E9902", "Falha simulada ao processar a consulta.")
PROCESSING_FAILURE: Final = Message("E9903", "Falha simulada durante o processamento do DPS.")
