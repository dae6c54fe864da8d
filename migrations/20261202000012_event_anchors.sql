-- Global anchors of the event log (docs/adr/0010-audit-anchors.md). The per-aggregate hash
-- chain (events.prev_hash/hash) shows an altered or removed event inside an aggregate's
-- history, but not a whole aggregate deleted or the newest events cut off: every remaining
-- chain is still intact. An anchor records, for the event at `position`, how many events
-- the log holds up to and including it in global order, and a running SHA-256 over the
-- (position, hash) of each of them. `meetings events verify` recomputes both.
--
-- Written by the command side's anchor task (one active per database) every 1,000 events
-- and at most 10 s after the newest event; append-only like the events.
CREATE TABLE event_anchors (
    position    text        COLLATE "C" PRIMARY KEY,
    events      bigint      NOT NULL CHECK (events > 0),
    chain       bytea       NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION audit_rows_are_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% rows are immutable (% on %)', TG_TABLE_NAME, TG_OP, TG_TABLE_NAME;
END;
$$;

CREATE TRIGGER event_anchors_no_update_or_delete
    BEFORE UPDATE OR DELETE ON event_anchors
    FOR EACH ROW EXECUTE FUNCTION audit_rows_are_immutable();
CREATE TRIGGER event_anchors_no_truncate
    BEFORE TRUNCATE ON event_anchors
    FOR EACH STATEMENT EXECUTE FUNCTION audit_rows_are_immutable();
