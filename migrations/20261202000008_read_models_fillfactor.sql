-- Read-model rows are updated in place again and again (every meeting event rewrites its
-- meeting row and document, every event its aggregate's sequence, every answer an attendee
-- and an agenda row). With full pages each such update moves the row to another page and adds
-- an entry to every index of the table; with room left on the page, PostgreSQL updates it
-- there (a HOT update: no index entry at all) whenever no indexed column changed. Applies to
-- pages written from now on.
ALTER TABLE rm_meetings SET (fillfactor = 70);
ALTER TABLE rm_meeting_documents SET (fillfactor = 70);
ALTER TABLE rm_meeting_attendees SET (fillfactor = 80);
ALTER TABLE rm_agenda SET (fillfactor = 80);
ALTER TABLE projection_sequences SET (fillfactor = 70);
