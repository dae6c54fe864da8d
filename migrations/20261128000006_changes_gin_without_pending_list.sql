-- The projector inserts into rm_changes in every batch. With GIN's fast update, inserts go to
-- a pending list that the inserting backend merges into the index whenever it outgrows
-- gin_pending_list_limit: a stall of a whole merge in the middle of a batch, every few
-- thousand events, which shows up directly as projection lag. Without it every insert pays
-- its few index entries (one per audience member) at once: steady, predictable batches.
ALTER INDEX rm_changes_audience SET (fastupdate = off);
