"""XMLDSig enveloped signatures of ABRASF 2.04 documents (RPS, lots, cancellation requests).

A `XmlSigner` is built once per company from an already loaded private key and certificate
(loading a PKCS#12 or PEM key costs tens of milliseconds; signing with a loaded key costs
well under one) and `SignerCache` keeps them per CNPJ. `verify_signature` checks our own output
in tests; the provider simulator verifies with code of its own (python-xmlsec), never this.

Two workarounds live here, both covered by tests:
- signxml refuses SHA-1 unless the signer opts in; many municipalities still require
  RSA-SHA1/SHA1, so the algorithm is a provider setting and SHA-1 is allowed on purpose.
- the libxml2 bundled with lxml 6.1 writes spurious `xmlns=""` when canonicalizing (inclusive
  C14N 1.0) an element that is not the document root and sits under a default namespace, which
  is exactly the ABRASF layout. Digests computed that way disagree with every other XMLDSig
  implementation (a provider would report a digest mismatch), so `canonicalize` re-roots the
  element with every in-scope namespace before canonicalizing it, and both the signer and the
  verifier use it.
"""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from lxml import etree
from signxml.algorithms import (
    CanonicalizationMethod,
    DigestAlgorithm,
    SignatureMethod,
)
from signxml.exceptions import SignXMLException
from signxml.signer import XMLSigner
from signxml.verifier import SignatureConfiguration, XMLVerifier

from nfse_core.xml.signature_names import (
    DigestAlgorithmName,
    ReferenceUri,
    SignatureAlgorithmName,
    X509Form,
)

DSIG_NS: Final = "http://www.w3.org/2000/09/xmldsig#"

C14N_1_0: Final = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"

SIGNATURE_METHODS: Final[dict[str, SignatureMethod]] = {
    "rsa-sha1": SignatureMethod.RSA_SHA1,
    "rsa-sha256": SignatureMethod.RSA_SHA256,
}
DIGEST_METHODS: Final[dict[str, DigestAlgorithm]] = {
    "sha1": DigestAlgorithm.SHA1,
    "sha256": DigestAlgorithm.SHA256,
}

_SIGNATURE = f"{{{DSIG_NS}}}Signature"
_X509_CERTIFICATE = f"{{{DSIG_NS}}}KeyInfo/{{{DSIG_NS}}}X509Data/{{{DSIG_NS}}}X509Certificate"
_REFERENCE = f"{{{DSIG_NS}}}SignedInfo/{{{DSIG_NS}}}Reference"


# What gets signed in each document, by the local name of its root, inner elements first: the
# lot signature covers the already signed RPSs. Paths are in the document's own namespace
# (ABRASF's, a family's such as Betha's, or NFS-e Nacional's), "." being the root itself. The
# Signature always goes right after the element it references, which is where the ABRASF XSDs
# put it (tcDeclaracaoPrestacaoServico, tcPedidoCancelamento, EnviarLoteRps*Envio), and at the
# end of the root for the root itself.
SIGNED_ELEMENTS: Final[dict[str, tuple[str, ...]]] = {
    "GerarNfseEnvio": ("Rps/InfDeclaracaoPrestacaoServico",),
    "EnviarLoteRpsSincronoEnvio": ("LoteRps/ListaRps/Rps/InfDeclaracaoPrestacaoServico", "LoteRps"),
    "EnviarLoteRpsEnvio": ("LoteRps/ListaRps/Rps/InfDeclaracaoPrestacaoServico", "LoteRps"),
    "CancelarNfseEnvio": ("Pedido/InfPedidoCancelamento",),
    # A consult, for the families that want it signed (ISSNet's ABRASF 2.04: its Pedido).
    "ConsultarNfseRpsEnvio": ("Pedido",),
    # NFS-e Nacional (leiaute DPS 1.01, TCDPS): the Signature follows infDPS inside DPS.
    "DPS": ("infDPS",),
}


def _qualified(namespace: str | None, path: str) -> str:
    if path == ".":
        return "."
    return "/".join(f"{{{namespace}}}{step}" if namespace else step for step in path.split("/"))


class SigningError(Exception):
    """The document cannot be signed (unknown document type, element without Id...)."""


class SignatureInvalid(Exception):
    """The document has no signature, or one that does not verify."""


def canonicalize(
    node: etree._Element,
    *,
    exclusive: bool = False,
    with_comments: bool = False,
    inclusive_ns_prefixes: Sequence[str] | None = None,
) -> bytes:
    """C14N of `node` as a document subset, correct for non-root elements (see module doc).

    The node is copied as the root of a new tree that declares every namespace in scope at
    the node (inclusive C14N renders exactly those), so libxml2's subtree path is not taken.
    """
    if node.getparent() is not None:
        nsmap: Any = node.nsmap  # the None key (default namespace) is not in the stubs
        attrib: dict[str, str] = {str(k): str(v) for k, v in node.attrib.items()}
        rooted = etree.Element(node.tag, attrib=attrib, nsmap=nsmap)
        rooted.text = node.text
        for child in node:
            clone = copy.deepcopy(child)
            clone.tail = child.tail
            rooted.append(clone)
        node = rooted
    return etree.tostring(
        node,
        method="c14n",
        exclusive=exclusive,
        with_comments=with_comments,
        inclusive_ns_prefixes=list(inclusive_ns_prefixes) if inclusive_ns_prefixes else None,
    )


def _index_path(node: etree._Element, top: etree._Element | None = None) -> list[int]:
    """Positions from `top` (the root) down to `node`: unlike names, they survive a round trip."""
    path: list[int] = []
    parent = node.getparent()
    while parent is not None and node is not top:
        path.append(parent.index(node))
        node, parent = parent, parent.getparent()
    if top is not None and node is not top:
        raise SigningError("target is not inside the document")
    path.reverse()
    return path


def _follow(root: etree._Element, path: Sequence[int]) -> etree._Element:
    node = root
    for index in path:
        node = node[index]
    return node


def _wire_form(node: etree._Element) -> etree._Element:
    """The node as a receiver would see it: its document serialized and parsed again.

    signxml builds the Signature in memory with unqualified names under a default namespace
    declaration; only after a round trip are those elements in the XMLDSig namespace.
    """
    root = node.getroottree().getroot()
    fresh = etree.fromstring(etree.tostring(root), _TRUSTED_PARSER)
    return _follow(fresh, _index_path(node))


# Documents handled here are our own (built by nfse_core) or were parsed by the hardened
# parser already; this parser only re-reads them after in-memory edits.
_TRUSTED_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)


class _C14nMixin:
    excise_empty_xmlns_declarations = False

    def _c14n(
        self,
        nodes: etree._Element | list[etree._Element],
        algorithm: CanonicalizationMethod,
        inclusive_ns_prefixes: Sequence[str] | None = None,
    ) -> bytes:
        exclusive = algorithm.value.startswith("http://www.w3.org/2001/10/xml-exc-c14n#")
        with_comments = algorithm.value.endswith("#WithComments")
        out = b""
        for node in nodes if isinstance(nodes, list) else [nodes]:
            out += canonicalize(
                _wire_form(node),
                exclusive=exclusive,
                with_comments=with_comments,
                inclusive_ns_prefixes=inclusive_ns_prefixes,
            )
        return out


class _AbrasfXmlSigner(_C14nMixin, XMLSigner):
    def check_deprecated_methods(self) -> None:
        # SHA-1 is what many municipal providers still demand; the provider registry chooses.
        return None


class _AbrasfXmlVerifier(_C14nMixin, XMLVerifier):
    pass


def certificate_fingerprint(cert: x509.Certificate) -> bytes:
    return cert.fingerprint(hashes.SHA256())


class XmlSigner:
    """Signs ABRASF documents with one company's key; build once, reuse for every document.

    Thread-safe (signxml keeps a parser per instance, and lxml parsers are not shared between
    threads, so signing is serialized per signer; it takes about a millisecond).
    """

    def __init__(  # noqa: PLR0913 - keyword-only: the provider's signing choices
        self,
        key: rsa.RSAPrivateKey,
        cert: x509.Certificate,
        chain: Sequence[x509.Certificate] = (),
        *,
        signature_algorithm: SignatureAlgorithmName = "rsa-sha1",
        digest_algorithm: DigestAlgorithmName = "sha1",
        reference_uri: ReferenceUri = "id",
        x509_form: X509Form = "chain",
    ) -> None:
        """`reference_uri` "id" references the signed element's Id (`#rps1`); "empty" the
        whole document (URI=""), for the families that sign so. `x509_form` "chain" carries the
        certificate and its chain; "single" the certificate alone, its base64 on one line."""
        if not isinstance(key, rsa.RSAPrivateKey):
            raise SigningError("only RSA keys (ICP-Brasil A1 certificates) are supported")
        try:
            sign_method = SIGNATURE_METHODS[signature_algorithm]
            digest_method = DIGEST_METHODS[digest_algorithm]
        except KeyError as exc:
            raise SigningError(f"unsupported algorithm {exc.args[0]!r}") from exc
        self.signature_algorithm = signature_algorithm
        self.digest_algorithm = digest_algorithm
        self.certificate = cert
        self.fingerprint = certificate_fingerprint(cert)
        self._key = key
        self.reference_uri = reference_uri
        self.x509_form = x509_form
        # The end-entity certificate first, then its chain (KeyInfo/X509Data order).
        self._certs: list[x509.Certificate] = [cert] if x509_form == "single" else [cert, *chain]
        self._signer = _AbrasfXmlSigner(
            signature_algorithm=sign_method,
            digest_algorithm=digest_method,
            c14n_algorithm=CanonicalizationMethod.CANONICAL_XML_1_0,
        )
        # No prefix: `<Signature xmlns="http://www.w3.org/2000/09/xmldsig#">`, the form the
        # ABRASF manual shows and that .NET-based providers verify without trouble.
        self._signer.namespaces = {None: DSIG_NS}  # type: ignore[dict-item]
        self._lock = threading.Lock()

    def sign(self, document: etree._Element) -> etree._Element:
        """A new tree: `document` with every element SIGNED_ELEMENTS names for its type signed."""
        name = etree.QName(document)
        rule = SIGNED_ELEMENTS.get(name.localname)
        if rule is None:
            raise SigningError(f"no signing rule for document {document.tag}")
        paths = [_qualified(name.namespace, path) for path in rule]
        root = _wire_form(document)
        for path in paths:
            count = len(root.findall(path))
            if count == 0:
                raise SigningError(f"{document.tag} has no {path}")
            for index in range(count):
                root = self.sign_element(root, root.findall(path)[index])
        return root

    def sign_bytes(self, document: etree._Element) -> bytes:
        """`sign`, serialized as sent: UTF-8 with an XML declaration, no added whitespace."""
        return etree.tostring(self.sign(document), encoding="UTF-8", xml_declaration=True)

    def sign_element(self, document: etree._Element, target: etree._Element) -> etree._Element:
        """A new tree with one enveloped Signature referencing `target@Id` (or, with
        reference_uri "empty", the whole document), placed right after `target` (at the end of
        the root when `target` is the root)."""
        target_id = target.get("Id")
        if self.reference_uri == "id" and not target_id:
            raise SigningError(f"{target.tag} has no Id attribute to reference")
        target_path = _index_path(target, document)
        options: dict[str, Any] = {}
        if self.reference_uri == "id":
            options["reference_uri"] = f"#{target_id}"
        with self._lock:
            try:
                signed = self._signer.sign(document, key=self._key, cert=self._certs, **options)
            except SignXMLException as exc:
                raise SigningError(f"signing {target.tag} failed: {exc}") from exc
        signature = signed[-1]
        if self.x509_form == "single":
            # One certificate, its base64 on one line: KeyInfo is outside what is signed.
            for node in signature.iterfind(f".//{{{DSIG_NS}}}X509Certificate"):
                node.text = "".join((node.text or "").split())
        if target_path:
            _follow(signed, target_path).addnext(signature)
        return _wire_form(signed)


@dataclass(slots=True)
class _Entry:
    signer: XmlSigner


class SignerCache:
    """A small LRU of signers per (CNPJ, algorithms); a renewed certificate replaces its entry."""

    def __init__(self, maxsize: int = 64) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = maxsize
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[tuple[str, str, str, str, str], _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def get(  # noqa: PLR0913 - the certificate's parts and the standard's algorithm names
        self,
        cnpj: str,
        key: rsa.RSAPrivateKey,
        cert: x509.Certificate,
        chain: Sequence[x509.Certificate] = (),
        *,
        signature_algorithm: SignatureAlgorithmName = "rsa-sha1",
        digest_algorithm: DigestAlgorithmName = "sha1",
        reference_uri: ReferenceUri = "id",
        x509_form: X509Form = "chain",
    ) -> XmlSigner:
        cache_key = (cnpj, signature_algorithm, digest_algorithm, reference_uri, x509_form)
        with self._lock:
            entry = self._entries.get(cache_key)
            if entry is not None and (
                entry.signer.certificate is cert
                or entry.signer.fingerprint == certificate_fingerprint(cert)
            ):
                self._entries.move_to_end(cache_key)
                self.hits += 1
                return entry.signer
            self.misses += 1
        signer = XmlSigner(
            key,
            cert,
            chain,
            signature_algorithm=signature_algorithm,
            digest_algorithm=digest_algorithm,
            reference_uri=reference_uri,
            x509_form=x509_form,
        )
        with self._lock:
            self._entries[cache_key] = _Entry(signer)
            self._entries.move_to_end(cache_key)
            while len(self._entries) > self.maxsize:
                self._entries.popitem(last=False)
        return signer

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def _signature_location(root: etree._Element, signature: etree._Element) -> str:
    """ElementPath prefix from `root` to the parent of `signature` (signxml's `location`)."""
    steps: list[str] = []
    node = signature.getparent()
    while node is not None and node is not root:
        parent = node.getparent()
        assert parent is not None
        same = [sibling for sibling in parent if sibling.tag == node.tag]
        steps.append(f"{node.tag}[{same.index(node) + 1}]")
        node = parent
    if node is None:
        raise SignatureInvalid("signature is not inside the document")
    return "./" + "".join(f"{step}/" for step in reversed(steps))


def _embedded_certificate(signature: etree._Element) -> x509.Certificate:
    node = signature.find(_X509_CERTIFICATE)
    if node is None or not node.text:
        raise SignatureInvalid("signature carries no X509Certificate")
    pem = (
        "-----BEGIN CERTIFICATE-----\n"
        + "".join(node.text.split())
        + "\n-----END CERTIFICATE-----\n"
    )
    try:
        return x509.load_pem_x509_certificate(pem.encode("ascii"))
    except ValueError as exc:
        raise SignatureInvalid(f"unreadable X509Certificate: {exc}") from exc


def signing_certificates(document: etree._Element) -> list[x509.Certificate]:
    """The certificates embedded in every Signature of the document, in document order."""
    return [_embedded_certificate(sig) for sig in document.iter(_SIGNATURE)]


def verify_signature(
    document: etree._Element,
    expected_cert: x509.Certificate | None = None,
    *,
    signature_algorithms: Iterable[str] = ("rsa-sha1", "rsa-sha256"),
    digest_algorithms: Iterable[str] = ("sha1", "sha256"),
) -> list[str]:
    """Verify every Signature in `document`; the ids they reference, in document order.

    With `expected_cert` each signature must verify with that certificate. Without it the
    certificate embedded in the signature is used: that proves integrity and that the
    signer holds the key of the certificate it shows, not that the certificate is trusted
    (chain validation against ICP-Brasil is the provider's business, not ours).
    Each signature must reference its preceding sibling, so that a valid signature cannot
    be moved next to other content (signature wrapping).
    """
    try:
        config = SignatureConfiguration(
            signature_methods=frozenset(SIGNATURE_METHODS[name] for name in signature_algorithms),
            digest_algorithms=frozenset(DIGEST_METHODS[name] for name in digest_algorithms),
            expect_references=1,
        )
    except KeyError as exc:
        raise ValueError(f"unsupported algorithm {exc.args[0]!r}") from exc
    signatures = list(document.iter(_SIGNATURE))
    if not signatures:
        raise SignatureInvalid("the document is not signed")
    ids: list[str] = []
    for signature in signatures:
        references = signature.findall(_REFERENCE)
        if len(references) != 1:
            raise SignatureInvalid("each signature must hold exactly one Reference")
        uri = references[0].get("URI", "")
        signed = signature.getprevious()
        if not uri.startswith("#") or signed is None or signed.get("Id") != uri[1:]:
            raise SignatureInvalid(f"signature reference {uri!r} is not its preceding element")
        cert = expected_cert if expected_cert is not None else _embedded_certificate(signature)
        options: dict[str, Any] = {
            "x509_cert": cert,
            "expect_config": _with_location(config, _signature_location(document, signature)),
        }
        try:
            _AbrasfXmlVerifier().verify(document, **options)
        except (SignXMLException, ValueError) as exc:
            raise SignatureInvalid(f"signature of {uri} does not verify: {exc}") from exc
        ids.append(uri[1:])
    return ids


def _with_location(config: SignatureConfiguration, location: str) -> SignatureConfiguration:
    return SignatureConfiguration(
        require_x509=config.require_x509,
        location=location,
        expect_references=config.expect_references,
        signature_methods=config.signature_methods,
        digest_algorithms=config.digest_algorithms,
    )
