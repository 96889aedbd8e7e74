"""Section 1: the EmitFn hot path in-process (validate, build, XSD) and lxml vs xmlschema.

Also measures what one botocore call costs the Lambda in CPU (serialize, SigV4, parse; the
network is cut off by a `before-send` hook), the figure the cost model scales by memory size.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import boto3
import xmlschema
from botocore.awsrequest import AWSResponse
from lxml import etree

from bench.core import Context, Row
from bench.cost import EMIT_AWS_CALLS
from bench.timing import time_per_call, us
from nfse_core.domain.models import InvoiceRequest
from nfse_core.domain.rps import RpsIdentity
from nfse_core.domain.rules import FISCAL_TZ
from nfse_core.domain.validation import parse_invoice_request
from nfse_core.xml.builder import build_gerar_nfse_envio, to_bytes
from nfse_core.xml.schema import abrasf_schema, schema_path
from nfse_core.xml.validate import validate_rps_document
from nfse_local.samples import invoice_body

TARGET_SECONDS = 300e-6
INVOICE_ID = "01JD0000000000000000000000"
RPS = RpsIdentity(numero=42, serie="1")


def sample_body(today: date | None = None) -> dict[str, Any]:
    """The sample body with this month's competencia (never in the future, whatever the date)."""
    day = today or datetime.now(FISCAL_TZ).date()
    return invoice_body(competencia=day.replace(day=1).isoformat())


def emit_once(body: dict[str, Any]) -> etree._Element:
    """What EmitFn does per invoice before the AWS calls (EmitApi.emit + EmitService.emit)."""
    request = parse_invoice_request(body)
    document = build_gerar_nfse_envio(request, RPS, INVOICE_ID, emitted_on=fiscal_today())
    validate_rps_document(document)
    return document


def fiscal_today() -> date:
    """Today in the fiscal time zone (the emission date of the sample documents)."""
    return datetime.now(FISCAL_TZ).date()


def xmlschema_validator() -> Any:
    return xmlschema.XMLSchema(str(schema_path()))


def botocore_call_cost(ctx: Context) -> float:
    """Seconds of client CPU per DynamoDB PutItem with the network replaced by a canned answer."""

    class _Raw:
        def stream(self, **_: Any) -> Any:
            yield b"{}"

    headers: Any = {"content-type": "application/x-amz-json-1.0"}

    def answer(**_: Any) -> AWSResponse:
        return AWSResponse("https://dynamodb", 200, headers, _Raw())

    client = boto3.client(
        "dynamodb",
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",  # noqa: S106 - dummy credentials, no request leaves
    )
    hook: Any = answer  # a before-send handler that answers ends the request there
    client.meta.events.register("before-send", hook)
    item = {"invoiceId": {"S": INVOICE_ID}, "status": {"S": "EMITTED"}, "total": {"N": "1500.00"}}

    def call() -> None:
        client.put_item(TableName="bench", Item=item)

    return time_per_call(
        call,
        number=ctx.iterations(300, 3),
        repeats=ctx.iterations(5, 1),
        warmup=ctx.iterations(20, 1),
    ).best


def rows(ctx: Context) -> list[Row]:
    body = sample_body()
    request: InvoiceRequest = parse_invoice_request(body)
    document = emit_once(body)
    lxml_schema = abrasf_schema()
    number, repeats, warmup = ctx.iterations(2000, 5), ctx.iterations(7, 1), ctx.iterations(200, 1)

    total = time_per_call(lambda: emit_once(body), number=number, repeats=repeats, warmup=warmup)
    parse = time_per_call(lambda: parse_invoice_request(body), number=number, repeats=repeats)
    build = time_per_call(
        lambda: build_gerar_nfse_envio(request, RPS, INVOICE_ID, emitted_on=fiscal_today()),
        number=number,
        repeats=repeats,
    )
    xsd = time_per_call(lambda: validate_rps_document(document), number=number, repeats=repeats)
    serialize = time_per_call(lambda: to_bytes(document), number=number, repeats=repeats)

    # The same document, the same run: the compiled libxml2 schema against xmlschema.
    lxml_only = time_per_call(
        lambda: lxml_schema.validate(document), number=number, repeats=repeats
    )
    xs = xmlschema_validator()
    if not (lxml_schema.validate(document) and xs.is_valid(document)):
        raise AssertionError("the sample document must be valid for both validators")
    xs_time = time_per_call(
        lambda: xs.is_valid(document), number=ctx.iterations(40, 2), repeats=ctx.iterations(3, 1)
    )
    ratio = xs_time.best / lxml_only.best
    compile_lxml = time_per_call(
        lambda: etree.XMLSchema(etree.parse(str(schema_path()))),
        number=1,
        repeats=ctx.iterations(5, 1),
    )
    compile_xs = time_per_call(xmlschema_validator, number=1, repeats=ctx.iterations(3, 1))
    boto = botocore_call_cost(ctx)

    ctx.notes["emit"] = note(
        ratio=ratio,
        compile_xmlschema=compile_xs.best,
        compile_lxml=compile_lxml.best,
        emit_path=total.best,
        botocore_call=boto,
    )
    ctx.measured["emit_path_seconds"] = total.best
    ctx.measured["botocore_call_seconds"] = boto
    ctx.measured["xmlschema_over_lxml"] = ratio
    ctx.measured["xsd_compile_lxml_seconds"] = compile_lxml.best
    # What the hot path really calls: validate_rps_document -> abrasf_schema(), an lxml schema.
    hot_is_lxml = "abrasf_schema" in validate_rps_document.__code__.co_names and isinstance(
        lxml_schema, etree.XMLSchema
    )
    faster = "lxml" if lxml_only.best <= xs_time.best else "xmlschema"
    return [
        Row(
            "validate + build + XSD (total)",
            us(total.best),
            f"< {TARGET_SECONDS * 1e6:,.0f} µs",
            total.best < TARGET_SECONDS,
            f"median {us(total.median)}; {total.repeats} x {total.number} invoices",
        ),
        Row("  parse_invoice_request (pydantic)", us(parse.best)),
        Row("  build_gerar_nfse_envio", us(build.best)),
        Row("  validate_rps_document (lxml, hot path)", us(xsd.best)),
        Row("  to_bytes (serialize for S3, outside the total)", us(serialize.best)),
        Row("XSD validate: lxml XMLSchema", us(lxml_only.best), note="libxml2, compiled once"),
        Row("XSD validate: xmlschema.XMLSchema", us(xs_time.best), note="same XSD, same document"),
        Row(
            "xmlschema / lxml ratio",
            f"{ratio:,.0f}x",
            "hot path uses the faster",
            hot_is_lxml == (faster == "lxml"),
            f"faster: {faster}; nfse_core.xml.validate uses "
            + ("abrasf_schema() (lxml)" if hot_is_lxml else "something else"),
        ),
        Row("XSD compile: lxml", us(compile_lxml.best), note="once per process (cold start)"),
        Row("XSD compile: xmlschema", us(compile_xs.best)),
        Row(
            "botocore client CPU per AWS call",
            us(boto),
            note="DynamoDB PutItem: serialize + SigV4 + parse, network cut off; "
            f"EmitFn makes {EMIT_AWS_CALLS}",
        ),
        Row("RPS document size", f"{len(to_bytes(document)):,} bytes", note="unsigned"),
    ]


def note(
    *,
    ratio: float,
    compile_xmlschema: float,
    compile_lxml: float,
    emit_path: float,
    botocore_call: float,
) -> str:
    """The prose under the table, every figure from this run's measurements (seconds)."""
    calls = EMIT_AWS_CALLS * botocore_call
    part = "small" if emit_path < calls else "larger"
    return (
        "The hot path validates with the compiled libxml2 schema (`abrasf_schema()`); xmlschema "
        f"is {ratio:,.0f}x slower on the same document, and takes {compile_xmlschema * 1e3:,.0f}"
        f" ms to compile against lxml's {compile_lxml * 1e3:,.1f} ms. Of the per-invoice CPU a "
        f"Lambda spends, the in-process path is the {part} part ({us(emit_path)} against "
        f"{us(calls)} for the calls): each of the {EMIT_AWS_CALLS} AWS calls costs botocore "
        f"about {botocore_call * 1e6:,.0f} µs of CPU (serialize, sign, parse) before any "
        "network wait."
    )
