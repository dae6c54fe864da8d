-- A meeting channel's resume reads its meeting's changes in a position range
-- (realtime/src/connection/replay.rs): one index scan instead of the user's whole audience.
CREATE INDEX rm_changes_aggregate_position ON rm_changes (aggregate_id, position);
