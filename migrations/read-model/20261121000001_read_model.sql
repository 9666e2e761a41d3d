-- The read-model database. Read models live in numbered generations so that
-- `projector rebuild-projections` can fill a fresh one while the live one
-- serves, then switch readers over in one transaction: readers query the views
-- `memories` and `sessions`, which name the active generation's tables.
CREATE EXTENSION IF NOT EXISTS vector;
CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- Which generation each projection serves from, and the embedding model its
-- vectors were made with (a model of another dimension needs a rebuild).
CREATE TABLE projection_state
(
    projection      text PRIMARY KEY,
    generation      integer     NOT NULL,
    embedding_model text,
    dimension       integer,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Embeddings by (model, SHA-256 of the embedded text), so unchanged text is
-- never embedded twice, across revisions, replays and rebuilds. `real[]`
-- rather than `vector(n)` so one cache serves models of any dimension.
CREATE TABLE embedding_cache
(
    model          text        NOT NULL,
    content_sha256 bytea       NOT NULL,
    embedding      real[]      NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model, content_sha256)
);

-- Which memory's texts each cached embedding was made from, so that erasing
-- a memory also drops the cached vectors of its texts (unless another memory
-- has the same text).
CREATE TABLE memory_embedding_texts
(
    memory_id      uuid  NOT NULL,
    content_sha256 bytea NOT NULL,
    PRIMARY KEY (memory_id, content_sha256)
);
CREATE INDEX memory_embedding_texts_hash ON memory_embedding_texts (content_sha256);

-- The tables of generation `g`, without the secondary indexes (a rebuild
-- bulk-loads first and indexes afterwards, which is several times faster).
CREATE FUNCTION create_search_generation(g integer, dim integer) RETURNS void
    LANGUAGE plpgsql AS
$$
BEGIN
    EXECUTE format($sql$
        CREATE TABLE memories_g%1$s
        (
            id              uuid PRIMARY KEY,
            owner_id        text        NOT NULL,
            session_id      uuid,
            title           text,
            content         text        NOT NULL,
            tags            text[]      NOT NULL DEFAULT '{}',
            metadata        jsonb       NOT NULL DEFAULT '{}',
            occurred_at     timestamptz,
            created_at      timestamptz NOT NULL,
            updated_at      timestamptz NOT NULL,
            deleted         boolean     NOT NULL DEFAULT false,
            version         bigint      NOT NULL,
            embedding       vector(%2$s),
            embedding_model text,
            search          tsvector GENERATED ALWAYS AS (
                setweight(to_tsvector('english', coalesce(title, '')), 'A') ||
                setweight(to_tsvector('english', content), 'B')) STORED
        );
        -- An erased memory leaves no row behind, only the version it was
        -- erased at, so a late duplicate event cannot bring it back.
        CREATE TABLE memory_tombstones_g%1$s
        (
            id      uuid PRIMARY KEY,
            version bigint NOT NULL
        );
        CREATE TABLE sessions_g%1$s
        (
            id         uuid PRIMARY KEY,
            owner_id   text        NOT NULL,
            title      text        NOT NULL,
            metadata   jsonb       NOT NULL DEFAULT '{}',
            status     text        NOT NULL,
            started_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL,
            ended_at   timestamptz,
            version    bigint      NOT NULL
        );
    $sql$, g, dim);
END;
$$;

CREATE FUNCTION create_search_indexes(g integer) RETURNS void
    LANGUAGE plpgsql AS
$$
BEGIN
    EXECUTE format($sql$
        CREATE INDEX IF NOT EXISTS memories_g%1$s_owner_created ON memories_g%1$s (owner_id, created_at, id);
        CREATE INDEX IF NOT EXISTS memories_g%1$s_owner_session ON memories_g%1$s (owner_id, session_id, created_at);
        CREATE INDEX IF NOT EXISTS memories_g%1$s_tags ON memories_g%1$s USING gin (tags);
        CREATE INDEX IF NOT EXISTS memories_g%1$s_search ON memories_g%1$s USING gin (search);
        CREATE INDEX IF NOT EXISTS memories_g%1$s_content_trgm ON memories_g%1$s USING gin (content gin_trgm_ops);
        CREATE INDEX IF NOT EXISTS memories_g%1$s_embedding ON memories_g%1$s
            USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64);
        CREATE INDEX IF NOT EXISTS sessions_g%1$s_owner ON sessions_g%1$s (owner_id, started_at, id);
    $sql$, g);
END;
$$;

-- Points the views at generation `g`. Dropping and re-creating (rather than
-- CREATE OR REPLACE) lets the embedding column change dimension; inside one
-- transaction readers see either the old views or the new ones.
CREATE FUNCTION activate_search_generation(g integer) RETURNS void
    LANGUAGE plpgsql AS
$$
BEGIN
    DROP VIEW IF EXISTS memories;
    DROP VIEW IF EXISTS sessions;
    EXECUTE format('CREATE VIEW memories AS SELECT * FROM memories_g%s', g);
    EXECUTE format('CREATE VIEW sessions AS SELECT * FROM sessions_g%s', g);
END;
$$;

CREATE FUNCTION drop_search_generation(g integer) RETURNS void
    LANGUAGE plpgsql AS
$$
BEGIN
    EXECUTE format('DROP TABLE IF EXISTS memories_g%1$s, memory_tombstones_g%1$s, sessions_g%1$s', g);
END;
$$;
