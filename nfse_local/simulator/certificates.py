"""The CNPJ an ICP-Brasil e-CNPJ certificate names, read with the cryptography package.

It is read from the subjectAltName otherName 2.16.76.1.3.3 or from the suffix of the subject
CN ("RAZAO SOCIAL:CNPJ").
"""

from __future__ import annotations

from typing import Final

from cryptography import x509
from cryptography.x509.oid import NameOID

# ICP-Brasil: the e-CNPJ's subjectAltName otherName holding the company's CNPJ.
CNPJ_OTHER_NAME_OID: Final = x509.ObjectIdentifier("2.16.76.1.3.3")
# Inner value types seen for ICP-Brasil otherNames: OCTET STRING, UTF8String, PrintableString,
# IA5String.
_DER_STRING_TAGS: Final = frozenset({0x04, 0x0C, 0x13, 0x16})
_DER_EXPLICIT_0: Final = 0xA0


def _der_string(data: bytes, *, unwrap: bool = True) -> str | None:
    """The text of one DER string value (otherName values), or None when it is not one."""
    if len(data) < 2:
        return None
    tag, first = data[0], data[1]
    offset = 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or len(data) < 2 + count:
            return None
        length = int.from_bytes(data[2 : 2 + count], "big")
        offset += count
    content = data[offset : offset + length]
    if len(content) != length:
        return None
    if tag == _DER_EXPLICIT_0 and unwrap:  # some encoders keep the [0] EXPLICIT wrapper
        return _der_string(content, unwrap=False)
    if tag not in _DER_STRING_TAGS:
        return None
    return content.decode("ascii", errors="replace")


def certificate_cnpjs(certificate: x509.Certificate) -> set[str]:
    """Every CNPJ the certificate names: its otherName 2.16.76.1.3.3 and its CN suffix.

    Either is enough for a match; real e-CNPJ certificates carry both, the throwaway test
    certificates of nfse_local.certs only the CN form "RAZAO SOCIAL:CNPJ".
    """
    names: set[str] = set()
    try:
        alt_names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        alt_names = None
    except ValueError:  # an extension cryptography cannot parse: judge by the subject alone
        alt_names = None
    if alt_names is not None:
        for other in alt_names.value.get_values_for_type(x509.OtherName):
            if other.type_id == CNPJ_OTHER_NAME_OID:
                text = _der_string(other.value)
                if text and text.strip():
                    names.add(text.strip().upper())
    for attribute in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
        value = attribute.value
        text = value if isinstance(value, str) else value.decode("utf-8", errors="replace")
        if ":" in text:
            suffix = text.rsplit(":", 1)[1].strip().upper()
            if suffix:
                names.add(suffix)
    return names


def certificate_names_prestador(certificate: x509.Certificate, cnpj: str) -> bool:
    """Whether `certificate` names the prestador of CNPJ `cnpj`."""
    wanted = cnpj.strip().upper()
    return bool(wanted) and wanted in certificate_cnpjs(certificate)
