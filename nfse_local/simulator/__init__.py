"""A municipality NFS-e web service on loopback: ABRASF 2.04 SOAP, strict checks, scripted faults.

It plays the other side of nfse_core.providers.abrasf for the tests, `make demo` and the chaos
run, and on purpose shares no code with it: it imports nothing from nfse_core. A test whose
both sides run our code would only prove that we agree with ourselves, so everything a
provider checks is done here with other means:

- XMLDSig signatures are verified with xmlsec (libxmlsec1), with the public key of the
  X509Certificate each Signature carries (signatures.py).
- The certificate must name the prestador: the CNPJ of an ICP-Brasil e-CNPJ certificate is
  read with the cryptography package (certificates.py).
- Requests are parsed by the simulator's own hardened lxml parser and validated against the
  ABRASF 2.04 XSD of the installed nfselib-legacy package, compiled once per process
  (parsing.py).

It keeps the NFS-e it issued in memory keyed by (prestador, numero, serie, tipo) and refuses a
second GerarNfse for the same RPS with E10 ("RPS já informado."), and answers a consult for an
RPS it does not know with E4 ("Esse RPS não foi enviado para a nossa base de dados"), the codes
of the ABRASF error table (messages.py).

Faults are set at start (FaultConfig), from Python (`sim.set_faults(...)`, `sim.force(...)`)
or over HTTP (`POST /_admin/faults` with a JSON object of FaultConfig fields); faults.py lists
them. `GET /_admin/stats` counts requests, issuances per RPS, refused duplicates and injected
faults, so tests can assert "exactly one issuance".

Besides `/nfse` (lenient plain ABRASF 2.04, as always), it speaks each provider family of
dialects.FAMILIES under `/<family>/<the provider's real path>` on the same port (abrasf-2.04,
issnet-2.04, webiss-2.02, betha-2.02): the family's envelope, SOAPAction, cabecalho, XSD, value
formats and signatures are checked by dialect_service.py and the answer goes back in the
family's shape; the state and the faults are shared by all families.

The modules: server (ProviderSimulator: lifecycle and control), http_server (HTTP, admin
endpoints, dripped answers), soap (envelopes and Faults), operations (the ABRASF operations),
checks, injection (where faults act), state, documents, parsing, signatures, certificates,
dialects (the families' table) and dialect_service (the families at the door).

    with ProviderSimulator() as sim:
        client = AbrasfSoapClient(sim.url)

    python -m nfse_local.simulator --port 8089
"""

from nfse_local.simulator.faults import FaultConfig, Forced
from nfse_local.simulator.server import ProviderSimulator
from nfse_local.simulator.state import SimulatorState, StoredNfse

__all__ = ["FaultConfig", "Forced", "ProviderSimulator", "SimulatorState", "StoredNfse"]
