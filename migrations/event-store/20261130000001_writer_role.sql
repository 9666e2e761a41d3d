-- Least privilege on the event store. The command service (and its relay
-- and API-key commands) logs in as a member of `second_brain_writer`, which
-- may read and append events but never change or delete one: an event is a
-- fact, and the only rewrite the design allows, erase's redaction, runs in
-- the trigger below with its owner's rights (SECURITY DEFINER), so it needs
-- no UPDATE grant. The migrating role owns the tables; readers (the query
-- service, the projector) are in `second_brain_reader` (20261122000001).
-- As there: roles belong to the server, may already exist, and another
-- database's migration may create this one at the same moment.
DO
$$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'second_brain_writer') THEN
        CREATE ROLE second_brain_writer NOLOGIN;
    END IF;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN NULL;
END;
$$;

REVOKE ALL ON events, api_keys, relay_checkpoints FROM PUBLIC;
GRANT SELECT, INSERT ON events TO second_brain_writer;
GRANT SELECT, INSERT, UPDATE ON api_keys, relay_checkpoints TO second_brain_writer;

-- The search path is pinned so a caller cannot shadow `events` with a table
-- of its own and borrow the owner's rights.
ALTER FUNCTION events_redact_erased_memory() SECURITY DEFINER SET search_path = pg_catalog, public;
