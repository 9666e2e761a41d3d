-- Least privilege on the read model: the query service logs in as a member
-- of `second_brain_reader` and may only SELECT. The projector, which owns
-- the read model (it creates a generation's tables on rebuild), is the
-- migrating role, so the default privileges below make every table and view
-- it creates later (a new generation, the views that point at it) readable
-- too. Roles belong to the server, may already exist, and another
-- database's migration may create this one at the same moment.
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

GRANT SELECT ON ALL TABLES IN SCHEMA public TO second_brain_reader;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO second_brain_reader;
