-- Per-user statistics for ranking keyword matches like BM25 (ADR 16): for
-- each owner, how many of their searchable memories hold each term
-- (`keyword_terms_g<N>`), and how many searchable memories they have and
-- how many terms those hold in all (`keyword_owners_g<N>`, for the average
-- length). Searchable means not deleted: the keyword leg never returns a
-- deleted memory, so its statistics must not count one.
--
-- Statement-level triggers on each generation's memories table keep them
-- exact in the same transaction as every write, whoever writes: the live
-- projection's upserts and deletes, a rebuild's COPY (one aggregate over
-- the whole load), an operator's repair. A term is a lexeme of the
-- `search` column (`english` configuration: stemmed, stop words dropped),
-- and a memory's length is its number of distinct lexemes, `length(search)`.
--
-- A term whose count falls to zero loses its row at once: a term is text
-- (`okapi`, `sc-40718`), and erasing a memory must leave none of its text
-- behind (ADR 2) — not even as a statistic.

CREATE FUNCTION keyword_statistics() RETURNS trigger
    LANGUAGE plpgsql AS
$$
DECLARE
    g       integer := TG_ARGV[0]::integer;
    changes text;
BEGIN
    -- The rows that leave the statistics count -1, those that enter +1; an
    -- update whose text did not change cancels out and writes nothing.
    changes := CASE TG_OP
        WHEN 'INSERT' THEN
            'SELECT owner_id, search, 1 AS d FROM new_rows WHERE NOT deleted'
        WHEN 'DELETE' THEN
            'SELECT owner_id, search, -1 AS d FROM old_rows WHERE NOT deleted'
        ELSE
            'SELECT owner_id, search, -1 AS d FROM old_rows WHERE NOT deleted
             UNION ALL
             SELECT owner_id, search, 1 AS d FROM new_rows WHERE NOT deleted'
        END;
    -- Keys in order, so that two writers lock shared rows in the same order.
    EXECUTE format($sql$
        WITH changes AS (%1$s),
             terms AS (
                 SELECT owner_id, term, sum(d)::integer AS d
                   FROM changes, unnest(tsvector_to_array(search)) AS term
                  GROUP BY owner_id, term),
             counted AS (
                 INSERT INTO keyword_terms_g%2$s AS t (owner_id, term, documents)
                 SELECT owner_id, term, d FROM terms WHERE d <> 0 ORDER BY owner_id, term
                 ON CONFLICT (owner_id, term) DO UPDATE SET documents = t.documents + EXCLUDED.documents)
        INSERT INTO keyword_owners_g%2$s AS o (owner_id, documents, terms)
        SELECT owner_id, sum(d)::integer, sum(d * length(search))::bigint
          FROM changes
         GROUP BY owner_id
        HAVING sum(d) <> 0 OR sum(d * length(search)) <> 0
         ORDER BY owner_id
        ON CONFLICT (owner_id) DO UPDATE
           SET documents = o.documents + EXCLUDED.documents, terms = o.terms + EXCLUDED.terms
    $sql$, changes, g);
    IF TG_OP <> 'INSERT' THEN
        EXECUTE format($sql$
            DELETE FROM keyword_terms_g%1$s AS t
             USING (SELECT DISTINCT owner_id, term
                      FROM old_rows, unnest(tsvector_to_array(search)) AS term) AS gone
             WHERE t.owner_id = gone.owner_id AND t.term = gone.term AND t.documents <= 0;
            DELETE FROM keyword_owners_g%1$s AS o
             USING (SELECT DISTINCT owner_id FROM old_rows) AS gone
             WHERE o.owner_id = gone.owner_id AND o.documents <= 0
        $sql$, g);
    END IF;
    RETURN NULL;
END;
$$;

-- The statistics tables of generation `g`, filled from what its memories
-- table holds, and the triggers that keep them. Idempotent.
CREATE FUNCTION create_keyword_statistics(g integer) RETURNS void
    LANGUAGE plpgsql AS
$$
BEGIN
    EXECUTE format($sql$
        CREATE TABLE IF NOT EXISTS keyword_terms_g%1$s
        (
            owner_id  text    NOT NULL,
            term      text    NOT NULL,
            documents integer NOT NULL,
            PRIMARY KEY (owner_id, term)
        );
        CREATE TABLE IF NOT EXISTS keyword_owners_g%1$s
        (
            owner_id  text    PRIMARY KEY,
            documents integer NOT NULL,
            terms     bigint  NOT NULL
        );
        DROP TRIGGER IF EXISTS keyword_insert ON memories_g%1$s;
        DROP TRIGGER IF EXISTS keyword_update ON memories_g%1$s;
        DROP TRIGGER IF EXISTS keyword_delete ON memories_g%1$s;
        TRUNCATE keyword_terms_g%1$s, keyword_owners_g%1$s;
        INSERT INTO keyword_terms_g%1$s (owner_id, term, documents)
        SELECT owner_id, term, count(*)
          FROM memories_g%1$s, unnest(tsvector_to_array(search)) AS term
         WHERE NOT deleted
         GROUP BY owner_id, term;
        INSERT INTO keyword_owners_g%1$s (owner_id, documents, terms)
        SELECT owner_id, count(*), sum(length(search))
          FROM memories_g%1$s
         WHERE NOT deleted
         GROUP BY owner_id;
        CREATE TRIGGER keyword_insert AFTER INSERT ON memories_g%1$s
            REFERENCING NEW TABLE AS new_rows
            FOR EACH STATEMENT EXECUTE FUNCTION keyword_statistics(%1$s);
        CREATE TRIGGER keyword_update AFTER UPDATE ON memories_g%1$s
            REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
            FOR EACH STATEMENT EXECUTE FUNCTION keyword_statistics(%1$s);
        CREATE TRIGGER keyword_delete AFTER DELETE ON memories_g%1$s
            REFERENCING OLD TABLE AS old_rows
            FOR EACH STATEMENT EXECUTE FUNCTION keyword_statistics(%1$s);
    $sql$, g);
END;
$$;

-- A new generation gets its statistics with its tables (empty, then kept by
-- the triggers through a rebuild's bulk load): the tables' function keeps
-- its body under a new name, and `create_search_generation` does both.
ALTER FUNCTION create_search_generation(integer, integer) RENAME TO create_search_tables;

CREATE FUNCTION create_search_generation(g integer, dim integer) RETURNS void
    LANGUAGE plpgsql AS
$$
BEGIN
    PERFORM create_search_tables(g, dim);
    PERFORM create_keyword_statistics(g);
END;
$$;

CREATE OR REPLACE FUNCTION activate_search_generation(g integer) RETURNS void
    LANGUAGE plpgsql AS
$$
BEGIN
    DROP VIEW IF EXISTS memories;
    DROP VIEW IF EXISTS sessions;
    DROP VIEW IF EXISTS keyword_terms;
    DROP VIEW IF EXISTS keyword_owners;
    EXECUTE format('CREATE VIEW memories AS SELECT * FROM memories_g%s', g);
    EXECUTE format('CREATE VIEW sessions AS SELECT * FROM sessions_g%s', g);
    EXECUTE format('CREATE VIEW keyword_terms AS SELECT * FROM keyword_terms_g%s', g);
    EXECUTE format('CREATE VIEW keyword_owners AS SELECT * FROM keyword_owners_g%s', g);
END;
$$;

CREATE OR REPLACE FUNCTION drop_search_generation(g integer) RETURNS void
    LANGUAGE plpgsql AS
$$
BEGIN
    EXECUTE format('DROP TABLE IF EXISTS memories_g%1$s, memory_tombstones_g%1$s, sessions_g%1$s,
                                         keyword_terms_g%1$s, keyword_owners_g%1$s', g);
END;
$$;

-- The generations that exist already (the active one, and one a rebuild
-- may be building) get their statistics now; the views follow the active
-- generation.
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
        PERFORM create_keyword_statistics(g);
    END LOOP;
    SELECT generation INTO g FROM projection_state WHERE projection = 'search';
    IF g IS NOT NULL THEN
        PERFORM activate_search_generation(g);
    END IF;
END;
$$;
