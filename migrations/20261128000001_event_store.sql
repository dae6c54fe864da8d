-- The event store: the single source of truth. Everything else (read models, NATS, websockets)
-- is derived from this table.
CREATE TABLE events (
    aggregate_type  text        NOT NULL,
    aggregate_id    uuid        NOT NULL,
    -- Per-aggregate, contiguous from 1; the primary key turns concurrent appends of the same
    -- sequence into a unique violation (optimistic concurrency, DESIGN.md guarantee 1).
    sequence        bigint      NOT NULL CHECK (sequence > 0),
    event_type      text        NOT NULL,
    event_version   text        NOT NULL,
    payload         jsonb       NOT NULL,
    -- event_id, actor_id, request_id, correlation_id, causation_id (guarantee 8).
    metadata        jsonb       NOT NULL,
    event_id        uuid        NOT NULL UNIQUE,
    recorded_at     timestamptz NOT NULL,
    -- Global position = (transaction_id, id). Readers only read below the oldest running
    -- transaction (pg_snapshot_xmin), so a transaction that commits late is never skipped
    -- (guarantee 3).
    transaction_id  xid8        NOT NULL DEFAULT pg_current_xact_id(),
    id              bigserial   NOT NULL,
    -- SHA-256 over the previous event's hash of the same aggregate and this event's content:
    -- `meetings events verify` recomputes the chain to detect tampering.
    prev_hash       bytea,
    hash            bytea       NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);

CREATE UNIQUE INDEX events_global_position ON events (transaction_id, id);

-- The event log is append-only: the application role never updates or deletes events.
CREATE FUNCTION events_are_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are immutable (% on events)', TG_OP;
END;
$$;

CREATE TRIGGER events_no_update_or_delete
    BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_are_immutable();
