-- Aggregate snapshots (platform::store::snapshot): an aggregate's serde form after
-- `sequence`, so a load applies at most about 100 events however long the stream (a meeting
-- with a quarter of a million chat messages loads like a new one). A cache, never the truth:
-- one that no longer decodes is ignored and rewritten from the events.
CREATE TABLE snapshots (
    aggregate_type  text        NOT NULL,
    aggregate_id    uuid        NOT NULL,
    sequence        bigint      NOT NULL,
    state           jsonb       NOT NULL,
    -- Hash of the event at `sequence`: what the next commit chains onto.
    last_hash       bytea       NOT NULL,
    taken_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (aggregate_type, aggregate_id)
);
