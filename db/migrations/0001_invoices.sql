-- The invoice ledger: one row per accepted invoice, mirrored from DynamoDB by the worker and
-- ProcessorFn (UPSERT, status moves only forward; see nfse_core/store/ledger.py).
--
-- Shared by PostgreSQL/Aurora and SQLite. nfse_core.store.migrate adapts the few dialect
-- differences for SQLite: CREATE SCHEMA is skipped (the executor ATTACHes a database file
-- AS nfse) and index names move from the table to the index (`CREATE INDEX nfse.x ON t`).
-- Every statement is re-runnable (IF NOT EXISTS): over the Data API there is no transaction
-- around a migration, so a half-applied file must be safe to apply again.

CREATE SCHEMA IF NOT EXISTS nfse;

CREATE TABLE IF NOT EXISTS nfse.invoices (
    invoice_id        text PRIMARY KEY,
    tenant            text NOT NULL,
    cnpj              text NOT NULL,
    municipio         char(7),
    total             numeric(15, 2) NOT NULL,
    status            text NOT NULL
        CONSTRAINT invoices_status_ck
        CHECK (status IN ('EMITTED', 'PROCESSING', 'ISSUED', 'FAILED', 'CANCELLED')),
    -- Mirrors nfse_core.domain.status.RANK so the UPSERT can refuse a backward move with
    -- one comparison; the check keeps the two columns from disagreeing.
    status_rank       smallint NOT NULL
        CONSTRAINT invoices_status_rank_ck
        CHECK (status_rank = CASE status
                                 WHEN 'EMITTED' THEN 0
                                 WHEN 'PROCESSING' THEN 1
                                 WHEN 'ISSUED' THEN 2
                                 WHEN 'FAILED' THEN 2
                                 WHEN 'CANCELLED' THEN 3
                             END),
    rps_numero        bigint,
    rps_serie         text,
    rps_tipo          smallint,
    provider_protocol text,
    nfse_number       text,
    verification_code text,
    xml_key           text,
    signed_key        text,
    nfse_key          text,
    error_code        text,
    error_message     text,
    created_at        timestamptz NOT NULL,
    processed_at      timestamptz,
    updated_at        timestamptz
);

-- An RPS (prestador + series + type + number) is never reused: a second invoice claiming
-- one already recorded is refused.
CREATE UNIQUE INDEX IF NOT EXISTS invoices_rps_uq
    ON nfse.invoices (cnpj, rps_serie, rps_tipo, rps_numero);

CREATE INDEX IF NOT EXISTS invoices_tenant_created_idx
    ON nfse.invoices (tenant, created_at);
