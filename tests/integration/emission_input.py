"""An input of the emission state machine (statemachine/emission.asl.json) as EmitFn starts it."""

from __future__ import annotations

from typing import Any

INVOICE_ID = "01JD7Z5Q6W8N3X4Y5Z6A7B8C9D"
CONTRACT_INPUT: dict[str, Any] = {
    "invoiceId": INVOICE_ID,
    "tenant": "acme",
    "cnpj": "11222333000181",
    "municipio": "3550308",
    "xmlKey": f"xml/{INVOICE_ID}.xml",
    "rps": {"numero": 42, "serie": "1", "tipo": 1},
}
