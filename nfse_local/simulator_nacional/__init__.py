"""The SEFIN Nacional (Sistema Nacional NFS-e) on loopback: REST with mutual TLS, strict checks,
scripted faults.

It plays the other side of nfse_core.providers.nacional for the tests, the local stack and the
chaos run, and on purpose shares no code with it: it imports nothing from nfse_core. It reads
the DPS with its own hardened parser, validates it against DPS_v1.01.xsd of the installed
nfelib package, verifies its XMLDSig signature with xmlsec (libxmlsec1) and that the signing
certificate names the emitente (the ABRASF simulator's certificate reader), and issues an NFS-e
that validates against NFSe_v1.01.xsd, signed with its own throwaway key.

API (basePath /SefinNacional, as the SEFIN's):
- POST /nfse {"dpsXmlGZipB64": ...}: 201 with the NFS-e, or 400 with `erros`; a second DPS
  with the same Id is refused with E0014 (ANEXO I).
- GET /nfse/{chave}: 200 with the NFS-e, 404 with `erro` E2401.
- HEAD /dps/{id}: 200 or 404, no body. GET /dps/{id}: 200 with `chaveAcesso`, 404 with E2404.
service.py describes the JSON shapes and their sources, messages.py every code and its source,
documents.py the chave de acesso's layout.

Control: faults at start (NacionalFaults), from Python (`sim.set_faults(...)`, `sim.force(...)`)
or over HTTP (`POST /_admin/faults` with a JSON object of NacionalFaults fields, `GET
/_admin/faults`, `GET /_admin/stats`, `POST /_admin/reset`); faults.py lists them. The stats
count requests, issuances per idDps (`max_issuances_per_dps` must stay 1), refused duplicates,
consults and injected faults.

    with NacionalSimulator(trusted_clients=[company_cert]) as sim:
        client = ...(sim.base_url, ca_bundle=sim.ca_bundle, client_cert=company_cert)

    python -m nfse_local.simulator_nacional --port 8090 --cert-dir .local/certs
"""

from nfse_local.simulator_nacional.faults import Forced, NacionalFaults
from nfse_local.simulator_nacional.server import NacionalSimulator
from nfse_local.simulator_nacional.state import NacionalState, StoredNfse

__all__ = ["Forced", "NacionalFaults", "NacionalSimulator", "NacionalState", "StoredNfse"]
