-- The projector reads the stream with an ordered consumer that starts after the last stream
-- sequence it applied; that sequence commits with the read models, so the read models and
-- the consumer position can never disagree (see docs/adr/0004-projector-ordered-consumer.md).
ALTER TABLE projection_checkpoints ADD COLUMN stream_sequence bigint;
