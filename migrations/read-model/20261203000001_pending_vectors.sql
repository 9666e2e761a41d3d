-- Vectors waiting for the nearest-neighbour index (ADR 21). While the
-- search projection drains a backlog, a batch writes each new vector to
-- `pending_embedding` rather than to `embedding`: the HNSW index covers
-- `embedding` only (pgvector leaves NULLs out), so the batch skips the
-- index insert, the most costly part of its write, and the embedder keeps
-- the cores. Semantic search compares the query with every pending vector
-- of its owner exactly, beside the index scan, so a pending memory is as
-- searchable as an indexed one. The projector's indexer moves pending
-- vectors into `embedding` while the projection is idle.
--
-- A row holds at most one of the two: a new vector goes to one column and
-- clears the other.

CREATE FUNCTION create_pending_vector_column(g integer) RETURNS void
    LANGUAGE plpgsql AS
$$
DECLARE
    vector_type text;
BEGIN
    SELECT format_type(atttypid, atttypmod) INTO STRICT vector_type
      FROM pg_attribute
     WHERE attrelid = format('memories_g%s', g)::regclass AND attname = 'embedding';
    EXECUTE format('ALTER TABLE memories_g%1$s ADD COLUMN IF NOT EXISTS pending_embedding %2$s',
                   g, vector_type);
END;
$$;

-- The pending rows by owner: what a search scans exactly, and the
-- indexer's to-do list. Empty whenever no backlog is draining.
CREATE FUNCTION create_pending_vector_index(g integer) RETURNS void
    LANGUAGE plpgsql AS
$$
BEGIN
    EXECUTE format('CREATE INDEX IF NOT EXISTS memories_g%1$s_pending ON memories_g%1$s (owner_id)
                        WHERE pending_embedding IS NOT NULL', g);
END;
$$;

CREATE OR REPLACE FUNCTION create_search_generation(g integer, dim integer) RETURNS void
    LANGUAGE plpgsql AS
$$
BEGIN
    PERFORM create_search_tables(g, dim);
    PERFORM create_context_columns(g);
    PERFORM create_pending_vector_column(g);
    PERFORM create_keyword_statistics(g);
END;
$$;

CREATE OR REPLACE FUNCTION create_search_indexes(g integer) RETURNS void
    LANGUAGE plpgsql AS
$$
BEGIN
    PERFORM create_search_table_indexes(g);
    PERFORM create_context_triggers(g);
    PERFORM create_pending_vector_index(g);
END;
$$;

-- The generations that exist already get the column; those with their
-- indexes (the active one) the index too; a generation a rebuild is still
-- loading gets it from create_search_indexes. The views are made again to
-- show the new column.
DO
$$
DECLARE
    g integer;
BEGIN
    FOR g IN
        SELECT substring(relname FROM '^memories_g([0-9]+)$')::integer
          FROM pg_class
         WHERE relname ~ '^memories_g[0-9]+$' AND relkind = 'r'
           AND relnamespace = current_schema()::regnamespace
    LOOP
        PERFORM create_pending_vector_column(g);
        IF to_regclass(format('memories_g%s_embedding', g)) IS NOT NULL THEN
            PERFORM create_pending_vector_index(g);
        END IF;
    END LOOP;
    SELECT generation INTO g FROM projection_state WHERE projection = 'search';
    IF g IS NOT NULL THEN
        PERFORM activate_search_generation(g);
    END IF;
END;
$$;
