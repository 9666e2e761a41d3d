-- Erase also redacts the Idempotency-Key a client sent with a command on the
-- erased memory, the erase included: a key may be built from the note's own
-- words. The key is replaced by `sha256:<hex of its UTF-8 bytes>`, which the
-- command service also looks up (store.rs, `recorded`), so a retry of such
-- a key still replays its first answer instead of running again. The
-- erasing event's own metadata is redacted as well; its payload has no text.
CREATE OR REPLACE FUNCTION events_redact_erased_memory() RETURNS trigger
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, public AS
$$
BEGIN
    UPDATE events AS e
       SET payload  = CASE WHEN e.sequence < NEW.sequence
                           THEN (SELECT jsonb_object_agg(kv.key, kv.value - ARRAY ['content', 'title', 'tags', 'metadata'])
                                   FROM jsonb_each(e.payload) AS kv)
                           ELSE e.payload END,
           metadata = CASE WHEN e.metadata ->> 'idempotency_key' IS NULL
                                OR e.metadata ->> 'idempotency_key' LIKE 'sha256:%'
                           THEN e.metadata - 'request_hash'
                           ELSE (e.metadata - 'request_hash')
                                || jsonb_build_object('idempotency_key', 'sha256:' ||
                                       encode(sha256(convert_to(e.metadata ->> 'idempotency_key', 'UTF8')), 'hex'))
                      END
     WHERE e.aggregate_type = NEW.aggregate_type
       AND e.aggregate_id = NEW.aggregate_id
       AND e.sequence <= NEW.sequence;
    RETURN NULL;
END;
$$;
