"""Section 1b: signing one RPS (worker side) against the raw RSA signature of the same bytes.

Also shows why keys are cached (nfse_core.providers.certificates, SignerCache): handing signxml
PEM bytes makes it parse the key on every call, and opening the PKCS#12 costs far more.
"""

from __future__ import annotations

from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from lxml import etree
from signxml.algorithms import CanonicalizationMethod, DigestAlgorithm, SignatureMethod
from signxml.signer import XMLSigner

from bench.core import Context, Row
from bench.emit_path import INVOICE_ID, RPS, fiscal_today, sample_body
from bench.timing import ms, time_per_call
from nfse_core.domain.validation import parse_invoice_request
from nfse_core.xml.builder import build_gerar_nfse_envio, rps_element_id, to_bytes
from nfse_core.xml.signing import XmlSigner, verify_signature
from nfse_local.certs import generate_key_and_certificate, to_pfx

TARGET_SECONDS = 1e-3
CNPJ = "11222333000181"
PASSWORD = "bench-only"  # noqa: S105 - a throwaway certificate generated for this run


class _Sha1Signer(XMLSigner):
    """Plain signxml with SHA-1 allowed (what ABRASF providers ask for), nothing else changed."""

    def check_deprecated_methods(self) -> None:
        return None


def sample_document() -> etree._Element:
    request = parse_invoice_request(sample_body())
    return build_gerar_nfse_envio(request, RPS, INVOICE_ID, emitted_on=fiscal_today())


def credentials() -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    return generate_key_and_certificate(CNPJ, razao_social="BENCH")


def rows(ctx: Context) -> list[Row]:
    key, cert = credentials()
    document = sample_document()
    data = to_bytes(document)
    signer = XmlSigner(key, cert)
    signed = etree.fromstring(signer.sign_bytes(document))
    if not verify_signature(signed, cert):
        raise AssertionError("the benchmark's signed document does not verify")
    number, repeats = ctx.iterations(300, 3), ctx.iterations(7, 1)

    ours = time_per_call(
        lambda: signer.sign_bytes(document),
        number=number,
        repeats=repeats,
        warmup=ctx.iterations(30, 1),
    )
    floor = time_per_call(
        lambda: key.sign(data, padding.PKCS1v15(), hashes.SHA1()),  # noqa: S303 - ABRASF's algorithm
        number=number,
        repeats=repeats,
    )

    plain = _Sha1Signer(
        signature_algorithm=SignatureMethod.RSA_SHA1,
        digest_algorithm=DigestAlgorithm.SHA1,
        c14n_algorithm=CanonicalizationMethod.CANONICAL_XML_1_0,
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode("ascii")
    reference = f"#{rps_element_id(INVOICE_ID)}"

    def with_key_object() -> Any:
        return plain.sign(document, key=key, cert=[cert], reference_uri=reference)

    def with_pem_bytes() -> Any:
        return plain.sign(document, key=key_pem, cert=cert_pem, reference_uri=reference)

    pfx = to_pfx(key, cert, PASSWORD)

    def open_pfx() -> Any:
        return pkcs12.load_key_and_certificates(pfx, PASSWORD.encode())

    loaded = time_per_call(
        with_key_object, number=number, repeats=repeats, warmup=ctx.iterations(30, 1)
    )
    pem = time_per_call(with_pem_bytes, number=ctx.iterations(10, 1), repeats=ctx.iterations(3, 1))
    opened = time_per_call(open_pfx, number=ctx.iterations(10, 1), repeats=ctx.iterations(3, 1))

    ctx.measured["sign_seconds"] = ours.best
    return [
        Row(
            "XmlSigner.sign_bytes (RSA-SHA1, C14N, enveloped)",
            ms(ours.best),
            f"< {TARGET_SECONDS * 1e3:g} ms",
            ours.best < TARGET_SECONDS,
            f"median {ms(ours.median)}; {ours.best / floor.best:.1f}x the floor",
        ),
        Row(
            f"floor: raw RSA-{key.key_size} PKCS1v15-SHA1 of the same bytes",
            ms(floor.best),
            note=f"{len(data):,} bytes, cryptography/OpenSSL",
        ),
        Row("signxml, loaded key object", ms(loaded.best), note="what XmlSigner does"),
        Row(
            "signxml, PEM bytes every call",
            ms(pem.best),
            note=f"{pem.best / loaded.best:.1f}x: the key is parsed on every call",
        ),
        Row(
            "open the A1 PKCS#12 (.pfx)",
            ms(opened.best),
            note="per TTL per CNPJ (certificate cache), never per document",
        ),
        Row("signed document size", f"{len(signer.sign_bytes(document)):,} bytes"),
    ]
