"""The SOAP side of the simulator: reading an envelope, and writing answers and Faults."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from lxml import etree

from nfse_local.simulator.parsing import MAX_REQUEST_BYTES, UnreadableXml, parse_untrusted

SOAP11_NS: Final = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12_NS: Final = "http://www.w3.org/2003/05/soap-envelope"
WSDL_NS: Final = "http://nfse.abrasf.org.br"


class Drop(Exception):
    """Close the connection without an answer (lost answer, timeout)."""


@dataclass
class Reply:
    """One HTTP answer of the simulator."""

    status: int
    body: bytes
    content_type: str = "text/xml; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    drip: tuple[float, int] | None = None  # (seconds between writes, bytes per write)


@dataclass(frozen=True)
class SoapRequest:
    """The operation a SOAP envelope asks for: its element and its name."""

    soap_ns: str
    element: etree._Element
    operation: str


class ReplyNow(Exception):
    """Answer `reply` at once, without looking at the request any further."""

    def __init__(self, reply: Reply) -> None:
        super().__init__("reply now")
        self.reply = reply


def answer(soap_ns: str, operation: str, document: etree._Element) -> Reply:
    """The envelope answering `operation` with `document` in its outputXML."""
    envelope = etree.Element(f"{{{soap_ns}}}Envelope", nsmap={"soap": soap_ns})
    body = etree.SubElement(envelope, f"{{{soap_ns}}}Body")
    response = etree.SubElement(body, f"{{{WSDL_NS}}}{operation}Response", nsmap={"ns2": WSDL_NS})
    output = etree.SubElement(response, "outputXML")
    output.text = etree.tostring(document, encoding="unicode")
    content_type = (
        "application/soap+xml; charset=utf-8" if soap_ns == SOAP12_NS else "text/xml; charset=utf-8"
    )
    return Reply(
        200, etree.tostring(envelope, encoding="UTF-8", xml_declaration=True), content_type
    )


def fault(soap_ns: str, message: str, status: int = 500) -> Reply:
    """A SOAP Fault in the envelope version of `soap_ns`, in an HTTP `status` answer."""
    # Only a 4xx blames the sender; a Fault in a 200 is the server failing all the same.
    sender = 400 <= status < 500
    envelope = etree.Element(f"{{{soap_ns}}}Envelope", nsmap={"soap": soap_ns})
    body = etree.SubElement(envelope, f"{{{soap_ns}}}Body")
    node = etree.SubElement(body, f"{{{soap_ns}}}Fault")
    if soap_ns == SOAP12_NS:
        code = etree.SubElement(node, f"{{{soap_ns}}}Code")
        etree.SubElement(code, f"{{{soap_ns}}}Value").text = (
            "soap:Sender" if sender else "soap:Receiver"
        )
        reason = etree.SubElement(node, f"{{{soap_ns}}}Reason")
        text = etree.SubElement(reason, f"{{{soap_ns}}}Text")
        text.set("{http://www.w3.org/XML/1998/namespace}lang", "pt-BR")
        text.text = message
        content_type = "application/soap+xml; charset=utf-8"
    else:
        etree.SubElement(node, "faultcode").text = "soap:Client" if sender else "soap:Server"
        etree.SubElement(node, "faultstring").text = message
        content_type = "text/xml; charset=utf-8"
    return Reply(
        status, etree.tostring(envelope, encoding="UTF-8", xml_declaration=True), content_type
    )


def read_envelope(body: bytes) -> SoapRequest:
    """The operation in a SOAP 1.1 or 1.2 envelope; raises ReplyNow with a Client Fault when
    `body` is no readable envelope."""
    try:
        envelope = parse_untrusted(body, max_bytes=MAX_REQUEST_BYTES)
    except UnreadableXml as exc:
        raise ReplyNow(fault(SOAP11_NS, f"Client: unreadable request ({exc.reason})", 400)) from exc
    soap_ns = etree.QName(envelope).namespace or SOAP11_NS
    request = envelope.find(f"{{{soap_ns}}}Body/*")
    if etree.QName(envelope).localname != "Envelope" or request is None:
        raise ReplyNow(fault(soap_ns, "Client: not a SOAP envelope", 400))
    operation = etree.QName(request).localname.removesuffix("Request")
    return SoapRequest(soap_ns, request, operation)


def message_of(request: SoapRequest) -> etree._Element:
    """The ABRASF document in the request's nfseDadosMsg, inline or as escaped text.

    Raises ReplyNow with a Client Fault when there is no nfseDadosMsg, and UnreadableXml when
    its text is no readable document.
    """
    dados = request.element.find("nfseDadosMsg")
    if dados is None:
        dados = request.element.find(f"{{{WSDL_NS}}}nfseDadosMsg")
    if dados is None:
        raise ReplyNow(fault(request.soap_ns, "Client: nfseDadosMsg missing", 400))
    if len(dados):
        return dados[0]
    text = (dados.text or "").strip().encode("utf-8")
    return parse_untrusted(text, max_bytes=MAX_REQUEST_BYTES)
