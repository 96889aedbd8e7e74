-- The ledger's application role, nfse_app: the components that write the ledger (the worker,
-- ProcessorFn and SweeperFn) sign in as it, through the Data API with LedgerAppSecret in AWS
-- and through DATABASE_URL in the local stack. The cluster's admin (the master secret) keeps
-- the schema and runs the migrations; nfse_app may only do what the components do
-- (nfse_core/store/ledger.py):
--   - the UPSERT, INSERT ... ON CONFLICT DO UPDATE ... WHERE ... RETURNING: INSERT, UPDATE, and
--     SELECT (the DO UPDATE reads the current row, RETURNING reads the new one);
--   - GET and LIST_BY_STATUS: SELECT.
-- Nothing else: no DELETE or TRUNCATE (the ledger is a record), no DDL, no access to
-- nfse.schema_migrations. A table a component needs later gets its GRANT in its own migration.
--
-- No password here: `python -m nfse_core.store.migrate --app-secret-arn ...` sets it from the
-- secret after the migrations (docs/security.md).
--
-- Re-runnable, as every migration (the Data API runs a file without a transaction around it).
-- PostgreSQL only: SQLite has no roles or privileges, so nfse_core.store.migrate skips the DO,
-- GRANT and REVOKE statements there (adapt_statement). The DO body is a quoted string, not
-- $$-quoted, because the splitter shared with SQLite reads standard quoting only.

-- CREATE ROLE has no IF NOT EXISTS. Roles belong to the whole cluster, so a migration of another
-- database may create this one at the same moment: duplicate_object (it existed) and
-- unique_violation (another session created it first) both mean it is there. A role found with
-- more than LOGIN is refused, not adopted: the grants below would no longer be all it can do.
DO '
BEGIN
    BEGIN
        CREATE ROLE nfse_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
    EXCEPTION
        WHEN duplicate_object OR unique_violation THEN NULL;
    END;
    IF EXISTS (
        SELECT FROM pg_catalog.pg_roles r
        WHERE r.rolname = ''nfse_app''
          AND (r.rolsuper OR r.rolcreatedb OR r.rolcreaterole OR r.rolreplication
               OR r.rolbypassrls OR NOT r.rolcanlogin
               OR EXISTS (SELECT FROM pg_catalog.pg_auth_members m WHERE m.member = r.oid))
    ) THEN
        RAISE EXCEPTION ''role nfse_app has attributes or memberships beyond LOGIN; fix it by hand'';
    END IF;
END';

GRANT USAGE ON SCHEMA nfse TO nfse_app;

GRANT SELECT, INSERT, UPDATE ON TABLE nfse.invoices TO nfse_app;

-- PostgreSQL 15 stopped letting every role create objects in the public schema; a cluster of an
-- older version (DbEngineVersion 13 or 14) still does, which would give nfse_app DDL there.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
