-- The event store. postgres-es reads and writes the first seven columns and
-- knows nothing of the rest; their defaults fill them in, so its INSERT runs
-- unchanged. The events table is also the outbox the relay reads.
CREATE TABLE events
(
    aggregate_type  text   NOT NULL,
    aggregate_id    text   NOT NULL,
    sequence        bigint NOT NULL CHECK (sequence >= 1),
    event_type      text   NOT NULL,
    event_version   text   NOT NULL,
    payload         jsonb  NOT NULL,
    metadata        jsonb  NOT NULL,
    event_id        uuid   NOT NULL DEFAULT gen_random_uuid(),
    -- Commit order is not position order: the relay reads by
    -- (transaction_id, global_position) below the snapshot's xmin instead.
    global_position bigint GENERATED ALWAYS AS IDENTITY,
    transaction_id  xid8   NOT NULL DEFAULT pg_current_xact_id(),
    -- The wall clock at insert, not the transaction start, so the events of one
    -- aggregate (appended one transaction after another) have rising times.
    recorded_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- Optimistic concurrency: a second writer of the same sequence fails with
    -- a unique violation, which postgres-es reports as a conflict.
    PRIMARY KEY (aggregate_type, aggregate_id, sequence),
    UNIQUE (event_id),
    UNIQUE (global_position)
);

CREATE INDEX events_relay_order ON events (transaction_id, global_position);

-- Idempotency: at most one event per (owner, Idempotency-Key). A command emits
-- at most one event, so the key identifies exactly one append; a concurrent
-- duplicate fails here inside its own transaction, and a retry after a crash
-- between append and response finds the first result.
CREATE UNIQUE INDEX events_idempotency_key
    ON events ((metadata ->> 'owner_id'), (metadata ->> 'idempotency_key'))
    WHERE metadata ? 'idempotency_key';

-- Erasure (see docs/adr/0002-erase-by-redaction.md): in the same transaction
-- that appends MemoryErased, strip the private fields from every earlier event
-- of that memory, and the request hash, which could confirm a guessed body.
-- Types, sequences, times and actors stay, so the stream keeps its shape.
CREATE FUNCTION events_redact_erased_memory() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    UPDATE events AS e
       SET payload  = (SELECT jsonb_object_agg(kv.key, kv.value - ARRAY ['content', 'title', 'tags', 'metadata'])
                         FROM jsonb_each(e.payload) AS kv),
           metadata = e.metadata - 'request_hash'
     WHERE e.aggregate_type = NEW.aggregate_type
       AND e.aggregate_id = NEW.aggregate_id
       AND e.sequence < NEW.sequence;
    RETURN NULL;
END;
$$;

CREATE TRIGGER events_redact_erased_memory
    AFTER INSERT ON events
    FOR EACH ROW
    WHEN (NEW.aggregate_type = 'Memory' AND NEW.event_type = 'MemoryErased')
EXECUTE FUNCTION events_redact_erased_memory();

-- Per-user API keys; only a SHA-256 of the secret is kept.
CREATE TABLE api_keys
(
    id            text PRIMARY KEY,
    user_id       text        NOT NULL,
    name          text        NOT NULL,
    secret_sha256 text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz
);

CREATE INDEX api_keys_user ON api_keys (user_id);
