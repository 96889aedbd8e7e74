"""`make chaos`: many invoices through the embedded stack while the provider misbehaves, the
workers are killed (SIGKILL) and EmitFn dies mid-request, then proof that none was lost, none
issued twice.

    python -m nfse_local.chaos --invoices 2000 --kills 6 --seed 7

The stack runs as in AWS (IAM enforced per role, the template's waits and timeouts; the list of
what still differs is nfse_local/fidelity.py), with two worker tasks at once. The invoices go
over HTTP as both sample tenants and all their CNPJs, each with its Idempotency-Key; after a
lost answer a client retries with the same key, or (some of them) gives up. The faults:
- the provider: temporary failures (HTTP 5xx, SOAP Faults, some inside HTTP 200, dropped
  connections, answers that never come), answers lost after issuing, timeouts after issuing,
  answers dripping a byte at a time, a consult that does not see an NFS-e for a few seconds
  after it was issued, and a consult whose "not found" comes with an internal error;
- EmitFn dies (its process exits) just before its XML or its StartExecution, or loses
  StartExecution's answer;
- a worker is killed at random moments and restarted.
At the end the faults stop, ProcessorFn reprocesses the DLQ and SweeperFn re-drives what
nothing works on, until every invoice is final; then the run checks the invariants of
docs/architecture.md:

- every accepted invoice is ISSUED or FAILED (nothing lost or stuck);
- the provider issued exactly one NFS-e per ISSUED invoice, the one DynamoDB records, and
  none for a FAILED invoice;
- DynamoDB and the ledger agree row by row (status, NFS-e number, total);
- no RPS number (cnpj, serie, tipo) was handed out twice;
- no status moved backwards: DynamoDB and the ledger are sampled during the whole run and
  every observed sequence is monotonic by nfse_core.domain.status.RANK;
- no invoice is stuck: the ones whose client gave up are final too (found by their key).

It prints a report and exits non-zero when any invariant fails.

The modules: config (ChaosConfig), driver (the run: stack, posting, faults on and off,
settling), faults (the fault plan: provider faults, EmitFn faults, the worker killer), clients
(the ERP clients posting invoices), probes (reading DynamoDB, SQS and the ledger; the scratch
ledger), sampling (status histories during the run), invariants (the checks), report.
"""

from nfse_local.chaos.config import ChaosConfig
from nfse_local.chaos.driver import run
from nfse_local.chaos.report import ChaosReport

__all__ = ["ChaosConfig", "ChaosReport", "run"]
