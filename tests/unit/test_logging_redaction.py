"""Log lines mask the tomador's CPF/CNPJ, e-mail addresses and secrets; invoice ids stay."""

from __future__ import annotations

import importlib
import io
import json
import logging
from collections.abc import Iterator

import pytest
from aws_lambda_powertools import Logger

from adapters_service.worker import configure_logging
from nfse_core.logging_redaction import (
    CNPJ_MASK,
    CPF_MASK,
    RedactingFilter,
    RedactingFormatter,
    mask_text,
    redact,
)

pytestmark = pytest.mark.unit

INVOICE_ID = "01JC8Z3Q4W5E6R7T8Y9V0A1B2C"
PRESTADOR_CNPJ = "11222333000181"
TOMADOR_CPF = "12345678909"
TOMADOR_CNPJ = "45.723.174/0001-10"
EMAIL = "maria.silva@example.com.br"


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    yield io.StringIO()


def test_mask_text_masks_cpf_cnpj_and_email_in_free_text() -> None:
    text = f"tomador {TOMADOR_CPF} ({EMAIL}) e {TOMADOR_CNPJ}, também 123.456.789-09"
    masked = mask_text(text)
    assert TOMADOR_CPF not in masked
    assert "123.456.789-09" not in masked
    assert "45.723.174/0001-10" not in masked
    assert "maria.silva" not in masked
    assert masked.count(CPF_MASK) == 2
    assert CNPJ_MASK in masked
    assert "***@example.com.br" in masked


def test_mask_text_leaves_ids_codes_and_longer_numbers() -> None:
    for text in (INVOICE_ID, "ORCHESTRATION_FAILED", "xml/" + INVOICE_ID + ".xml", "1700000000000"):
        assert mask_text(text) == text


def test_alphanumeric_cnpj_is_masked() -> None:
    assert mask_text("12ABC34501DE35") == CNPJ_MASK
    assert mask_text("ABCDEFGHIJKLMN") == "ABCDEFGHIJKLMN"


def test_redact_keeps_prestador_cnpj_and_masks_tomador_fields() -> None:
    record = {
        "invoice_id": INVOICE_ID,
        "cnpj": PRESTADOR_CNPJ,
        "tomador": {"cpfCnpj": {"cpf": TOMADOR_CPF}, "razaoSocial": "Maria Silva", "email": EMAIL},
        "cpfCnpj": TOMADOR_CPF,
        "email": EMAIL,
        "password": "hunter2-hunter2",
        "headers": {"Authorization": "Bearer eyJabc", "x-api-key": "k" * 40},
        "message": f"emitindo para {TOMADOR_CPF}",
    }
    out = redact(record)
    assert out["invoice_id"] == INVOICE_ID
    assert out["cnpj"] == PRESTADOR_CNPJ
    assert out["cpfCnpj"] == "***"
    assert out["email"] == "***@example.com.br"
    assert out["tomador"] == {
        "cpfCnpj": {"cpf": "***"},
        "razaoSocial": "***",
        "email": "***@example.com.br",
    }
    assert out["password"] == "***"
    assert out["headers"] == {"Authorization": "***", "x-api-key": "***"}
    assert TOMADOR_CPF not in json.dumps(out)
    assert record["cpfCnpj"] == TOMADOR_CPF, "redact works on a copy"


def test_worker_formatter_masks_a_log_line(stream: io.StringIO) -> None:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(RedactingFormatter(utc=True))
    log = logging.getLogger("test.redaction.worker")
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(logging.INFO)
    log.info(
        "tomador %s notified at %s",
        TOMADOR_CPF,
        EMAIL,
        extra={"invoice_id": INVOICE_ID, "cnpj": PRESTADOR_CNPJ, "cpfCnpj": TOMADOR_CPF},
    )
    line = json.loads(stream.getvalue())
    assert line["invoice_id"] == INVOICE_ID
    assert line["cnpj"] == PRESTADOR_CNPJ
    assert TOMADOR_CPF not in stream.getvalue()
    assert "maria.silva" not in stream.getvalue()
    assert line["message"] == f"tomador {CPF_MASK} notified at ***@example.com.br"


def test_exception_text_is_masked(stream: io.StringIO) -> None:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(RedactingFormatter(utc=True))
    log = logging.getLogger("test.redaction.exc")
    log.handlers[:] = [handler]
    log.propagate = False
    try:
        raise ValueError(f"bad tomador {TOMADOR_CPF} / {EMAIL}")
    except ValueError:
        log.exception("failed", extra={"invoice_id": INVOICE_ID})
    text = stream.getvalue()
    assert INVOICE_ID in text
    assert TOMADOR_CPF not in text
    assert "maria.silva" not in text


def test_powertools_logger_with_the_formatter_masks_appended_keys(stream: io.StringIO) -> None:
    logger = Logger(
        service="redaction-test", logger_formatter=RedactingFormatter(), logger_handler=None
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logger.registered_formatter)
    logger.addHandler(handler)
    logger.append_keys(invoice_id=INVOICE_ID, email=EMAIL)
    logger.info({"event": "emitted", "tomador": {"cpfCnpj": TOMADOR_CPF}, "cnpj": PRESTADOR_CNPJ})
    last = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert last["invoice_id"] == INVOICE_ID
    assert last["email"] == "***@example.com.br"
    assert last["message"]["cnpj"] == PRESTADOR_CNPJ
    assert last["message"]["tomador"] == {"cpfCnpj": "***"}


def test_the_handlers_and_the_worker_use_the_redacting_formatter() -> None:
    for module in ("functions.emit.app", "functions.get.app", "functions.processor.app"):
        app = importlib.import_module(module)
        assert isinstance(app.logger.registered_formatter, RedactingFormatter), module
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging()
        assert isinstance(root.handlers[0].formatter, RedactingFormatter)
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])


def test_plain_filter_masks_message_and_extras(stream: io.StringIO) -> None:
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(logging.Formatter("%(message)s %(invoice_id)s %(email)s"))
    log = logging.getLogger("test.redaction.filter")
    log.handlers[:] = [handler]
    log.propagate = False
    log.warning("cpf %s", TOMADOR_CPF, extra={"invoice_id": INVOICE_ID, "email": EMAIL})
    assert stream.getvalue().strip() == f"cpf {CPF_MASK} {INVOICE_ID} ***@example.com.br"
