-- The query service reads the event store (history for audit, point-in-time
-- state, API keys) and must never write it. This group role may only read
-- the tables it needs; a deployment gives the query service a login role
-- that is a member of it (`CREATE ROLE … LOGIN IN ROLE second_brain_reader`).
-- Roles belong to the whole server, not one database, so another database's
-- migration may create it first, or at the same moment.
DO
$$
BEGIN
    CREATE ROLE second_brain_reader NOLOGIN;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN NULL;
END;
$$;

GRANT SELECT ON events, api_keys TO second_brain_reader;
