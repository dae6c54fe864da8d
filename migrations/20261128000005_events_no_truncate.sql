-- The event log is append-only: TRUNCATE is refused too (UPDATE and DELETE already are).
-- Operators who must remove data do it deliberately, by dropping the trigger first.
CREATE TRIGGER events_no_truncate
    BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_are_immutable();
