-- The query service reads the event store (history for audit, point-in-time
-- state, API keys) and must never write it. This group role may only read
-- the tables it needs; a deployment gives the query service a login role
-- that is a member of it (`CREATE ROLE … LOGIN IN ROLE second_brain_reader`).
-- Roles belong to the whole server, not one database: a deployment may have
-- created it already (the migrating role then needs no CREATEROLE), and
-- another database's migration may create it at the same moment.
DO
$$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'second_brain_reader') THEN
        CREATE ROLE second_brain_reader NOLOGIN;
    END IF;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN NULL;
END;
$$;

GRANT SELECT ON events, api_keys TO second_brain_reader;
