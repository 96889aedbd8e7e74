"""The MensagemRetorno codes the simulator answers with.

E4 and E10 are the ABRASF error table's codes and wording. The E9xx codes are the simulator's
own, apart from the table's, so that a test can tell which check refused a document.
"""

from __future__ import annotations

from typing import Final

Message = tuple[str, str, str | None]  # Codigo, Mensagem, Correcao

RPS_NOT_FOUND: Final[Message] = (
    "E4",
    "Esse RPS não foi enviado para a nossa base de dados",
    "Envie o RPS para emissão da NFS-e.",
)
DUPLICATE_RPS: Final[Message] = (
    "E10",
    "RPS já informado.",
    "Para essa Inscrição Municipal/CNPJ já existe um RPS informado com o mesmo número, série e"
    " tipo.",
)
SCHEMA_INVALID: Final[Message] = ("E900", "Arquivo em desacordo com o XML Schema.", None)
SIGNATURE_INVALID: Final[Message] = ("E901", "Assinatura digital ausente ou inválida.", None)
CERT_MISMATCH: Final[Message] = ("E902", "Certificado não pertence ao prestador.", None)
FORCED_REJECT: Final[Message] = ("E903", "Rejeição simulada.", "Remova o marcador [sim:reject].")
NFSE_NOT_FOUND: Final[Message] = ("E905", "NFS-e não encontrada.", None)
ALREADY_CANCELLED: Final[Message] = ("E906", "NFS-e já cancelada.", None)
UNKNOWN_OPERATION: Final[Message] = ("E907", "Operação não suportada pelo simulador.", None)
CONSULT_INTERNAL_ERROR: Final[Message] = (
    "E999",
    "Erro interno ao processar a consulta. Tente novamente.",
    None,
)
VALUES_INCONSISTENT: Final[Message] = (
    "E908",
    "Valor do ISS ou da base de cálculo em desacordo com os valores informados.",
    "ValorIss deve ser (ValorServicos - ValorDeducoes - DescontoIncondicionado) x Aliquota.",
)
CABECALHO_INVALID: Final[Message] = (
    "E909",
    "Cabeçalho (nfseCabecMsg) ausente ou com versão diferente da do provedor.",
    None,
)
ITEM_FORMAT_INVALID: Final[Message] = (
    "E910",
    "ItemListaServico fora do formato do provedor.",
    "Informe o subitem da LC 116/2003 sem ponto (ex.: 0107).",
)
