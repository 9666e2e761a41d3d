-- Failed deliveries: how often each event has been tried, and which
-- aggregates are parked behind an event that was dead-lettered. Both belong
-- to the projector's own bookkeeping, not to any read model's generation, so
-- a rebuild leaves them alone.

-- One row per event that failed at least once and is still being retried.
-- An attempt is counted *before* it runs (and the row committed), so a
-- projector or database that dies during the attempt still counts it; the row
-- goes when the event is applied or dead-lettered.
CREATE TABLE delivery_attempts
(
    projection       text        NOT NULL,
    event_id         uuid        NOT NULL,
    aggregate_type   text        NOT NULL,
    aggregate_id     text        NOT NULL,
    sequence         bigint      NOT NULL,
    attempts         integer     NOT NULL,
    first_failed_at  timestamptz NOT NULL DEFAULT now(),
    last_failed_at   timestamptz NOT NULL DEFAULT now(),
    -- The kind and message (with causes) of the last failure seen; NULL while
    -- an attempt is running or when none ended with an error the projector
    -- could record (it stopped, or the database went away, during it).
    last_error_kind    text,
    last_error         text,
    -- Which attempt `last_error` is from: when it is not the last one, the
    -- last attempt ended without an error anyone could record.
    last_error_attempt integer,
    PRIMARY KEY (projection, event_id)
);

-- An aggregate whose event `first_parked_sequence` was dead-lettered: every
-- later event of it, in this projection, goes to the dead-letter queue too
-- (never applied out of order) until `projector dead-letters retry` or
-- `purge` removes the row.
CREATE TABLE parked_aggregates
(
    projection             text        NOT NULL,
    aggregate_type         text        NOT NULL,
    aggregate_id           text        NOT NULL,
    first_parked_sequence  bigint      NOT NULL,
    first_parked_event_id  uuid        NOT NULL,
    reason                 text        NOT NULL,
    attempts               integer     NOT NULL,
    parked_at              timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, aggregate_type, aggregate_id)
);
CREATE INDEX parked_aggregates_id ON parked_aggregates (aggregate_id);
