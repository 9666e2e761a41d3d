-- The outbox relay (see docs/adr/0004-outbox-relay.md): where each relay has
-- got to, and a wake-up call for it when events are appended.

-- One row per relay, named after the exchange it publishes to. The position is
-- the last event whose publish the broker confirmed, in the relay's reading
-- order (transaction_id, global_position); (0, 0) is before every event.
CREATE TABLE relay_checkpoints
(
    name            text PRIMARY KEY,
    transaction_id  xid8        NOT NULL DEFAULT '0',
    global_position bigint      NOT NULL DEFAULT 0,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Statement-level, so a multi-row append sends one notification; Postgres also
-- folds identical notifications within a transaction, and delivers them only
-- at commit, which is when the relay can see the rows.
CREATE FUNCTION events_notify_appended() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    PERFORM pg_notify('events_appended', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER events_notify_appended
    AFTER INSERT ON events
    FOR EACH STATEMENT
EXECUTE FUNCTION events_notify_appended();
