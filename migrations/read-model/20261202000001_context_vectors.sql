-- Context vectors (ADR 17): besides its own embedding, a memory in a session
-- gets the embedding of itself with the turn before and the turn after it
-- (the visible memories next to it in its session, ordered by occurred_at,
-- then created_at, then id). Hybrid search ranks by both: a conversation's
-- answer ("nine days, finally") often means something only next to the turn
-- it answers.
--
-- `context_embedding` is NULL until the projector's context worker has made
-- it, and again as soon as the memory's text or place changes, or a
-- neighbour's does: the vector then describes text that is no longer there,
-- possibly erased, so it goes at once, in the same transaction as the
-- change. `context_version` counts those changes, so that the worker writes
-- a vector only for the version whose window it read.

CREATE FUNCTION create_context_columns(g integer) RETURNS void
    LANGUAGE plpgsql AS
$$
DECLARE
    vector_type text;
BEGIN
    SELECT format_type(atttypid, atttypmod) INTO STRICT vector_type
      FROM pg_attribute
     WHERE attrelid = format('memories_g%s', g)::regclass AND attname = 'embedding';
    EXECUTE format('ALTER TABLE memories_g%1$s
                        ADD COLUMN IF NOT EXISTS context_embedding %2$s,
                        ADD COLUMN IF NOT EXISTS context_version bigint NOT NULL DEFAULT 0',
                   g, vector_type);
END;
$$;

-- Forgets the context vectors of the visible memories before and after
-- position (`at`, `id`) of a session in table `tbl`.
CREATE FUNCTION forget_context_around(tbl text, owner text, session uuid, at timestamptz, id uuid)
    RETURNS void
    LANGUAGE plpgsql AS
$$
BEGIN
    EXECUTE format(
        'UPDATE %1$I SET context_embedding = NULL, context_version = context_version + 1
          WHERE id IN ((SELECT id FROM %1$I
                         WHERE session_id = $2 AND owner_id = $1 AND NOT deleted
                           AND (coalesce(occurred_at, created_at), id) < ($3, $4)
                         ORDER BY coalesce(occurred_at, created_at) DESC, id DESC LIMIT 1)
                       UNION ALL
                       (SELECT id FROM %1$I
                         WHERE session_id = $2 AND owner_id = $1 AND NOT deleted
                           AND (coalesce(occurred_at, created_at), id) > ($3, $4)
                         ORDER BY coalesce(occurred_at, created_at), id LIMIT 1))', tbl)
        USING owner, session, at, id;
END;
$$;

-- Whether an update changed what a context window is made of.
CREATE FUNCTION context_changed(old_row record, new_row record) RETURNS boolean
    LANGUAGE plpgsql AS
$$
BEGIN
    RETURN (old_row.title, old_row.content, old_row.session_id, old_row.occurred_at, old_row.deleted)
               IS DISTINCT FROM
           (new_row.title, new_row.content, new_row.session_id, new_row.occurred_at, new_row.deleted);
END;
$$;

CREATE FUNCTION context_forget_own() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    IF context_changed(OLD, NEW) THEN
        NEW.context_embedding := NULL;
        NEW.context_version := OLD.context_version + 1;
    END IF;
    RETURN NEW;
END;
$$;

CREATE FUNCTION context_forget_neighbours() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    IF TG_OP = 'UPDATE' AND NOT context_changed(OLD, NEW) THEN
        RETURN NULL;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.session_id IS NOT NULL THEN
        PERFORM forget_context_around(TG_TABLE_NAME, OLD.owner_id, OLD.session_id,
                                      coalesce(OLD.occurred_at, OLD.created_at), OLD.id);
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') AND NEW.session_id IS NOT NULL THEN
        PERFORM forget_context_around(TG_TABLE_NAME, NEW.owner_id, NEW.session_id,
                                      coalesce(NEW.occurred_at, NEW.created_at), NEW.id);
    END IF;
    RETURN NULL;
END;
$$;

-- The index the neighbour lookups use, the worker's to-do index, and the
-- triggers. Created with the other secondary indexes, after a rebuild's bulk
-- load: the bulk-loaded rows start without context vectors anyway, and a
-- row trigger per loaded row would only look for neighbours to forget.
CREATE FUNCTION create_context_triggers(g integer) RETURNS void
    LANGUAGE plpgsql AS
$$
BEGIN
    EXECUTE format($sql$
        CREATE INDEX IF NOT EXISTS memories_g%1$s_session_order ON memories_g%1$s
            (session_id, (coalesce(occurred_at, created_at)), id) WHERE session_id IS NOT NULL;
        CREATE INDEX IF NOT EXISTS memories_g%1$s_context_todo ON memories_g%1$s (id)
            WHERE context_embedding IS NULL AND session_id IS NOT NULL AND NOT deleted;
        DROP TRIGGER IF EXISTS context_forget_own ON memories_g%1$s;
        CREATE TRIGGER context_forget_own
            BEFORE UPDATE OF title, content, session_id, occurred_at, deleted ON memories_g%1$s
            FOR EACH ROW EXECUTE FUNCTION context_forget_own();
        DROP TRIGGER IF EXISTS context_forget_neighbours ON memories_g%1$s;
        CREATE TRIGGER context_forget_neighbours
            AFTER INSERT OR DELETE OR UPDATE OF title, content, session_id, occurred_at, deleted
            ON memories_g%1$s
            FOR EACH ROW EXECUTE FUNCTION context_forget_neighbours();
    $sql$, g);
END;
$$;

CREATE OR REPLACE FUNCTION create_search_generation(g integer, dim integer) RETURNS void
    LANGUAGE plpgsql AS
$$
BEGIN
    PERFORM create_search_tables(g, dim);
    PERFORM create_context_columns(g);
    PERFORM create_keyword_statistics(g);
END;
$$;

ALTER FUNCTION create_search_indexes(integer) RENAME TO create_search_table_indexes;

CREATE FUNCTION create_search_indexes(g integer) RETURNS void
    LANGUAGE plpgsql AS
$$
BEGIN
    PERFORM create_search_table_indexes(g);
    PERFORM create_context_triggers(g);
END;
$$;

-- The generations that exist already get the columns; those with their
-- indexes (the active one) the triggers too; a generation a rebuild is still
-- loading gets them from create_search_indexes. The views are made again to
-- show the new columns.
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
        PERFORM create_context_columns(g);
        IF to_regclass(format('memories_g%s_embedding', g)) IS NOT NULL THEN
            PERFORM create_context_triggers(g);
        END IF;
    END LOOP;
    SELECT generation INTO g FROM projection_state WHERE projection = 'search';
    IF g IS NOT NULL THEN
        PERFORM activate_search_generation(g);
    END IF;
END;
$$;
