-- Every service instance remembers the API keys it has verified and listens
-- on the channel `api_key_revoked` to forget them (service-kit's `api_keys`
-- module). The notice is sent by the table itself, from the transaction that
-- changes the key, so it leaves exactly when that change commits (never for
-- a rolled-back one) whichever tool made it: `command-service api-key
-- revoke`, a hand-written UPDATE or DELETE, or a TRUNCATE. The payload is
-- the key id, or '*' for every key.
CREATE FUNCTION notify_api_key_revoked() RETURNS trigger
    LANGUAGE plpgsql
AS
$$
BEGIN
    IF TG_LEVEL = 'STATEMENT' THEN
        PERFORM pg_notify('api_key_revoked', '*');
    ELSE
        PERFORM pg_notify('api_key_revoked', OLD.id);
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER api_keys_revoked_notice
    AFTER UPDATE OR DELETE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION notify_api_key_revoked();

CREATE TRIGGER api_keys_truncated_notice
    AFTER TRUNCATE ON api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION notify_api_key_revoked();
