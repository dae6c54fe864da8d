-- Recurring series in the read models. A series is one rm_meetings row (its first
-- occurrence's times and the rule in `recurrence`) plus the occurrences that were moved or
-- cancelled, by original start; answers to single occurrences sit with the attendee. The
-- agenda keeps one row per series and person too: `series` carries what the query side needs
-- to expand it inside the asked window (rule, zone, changes, the person's own answers), and
-- `starts_at` .. `series_ends_at` bound where its occurrences can be (NULL: open-ended).
ALTER TABLE rm_meetings ADD COLUMN occurrences jsonb NOT NULL DEFAULT '{}';
-- iCalendar SEQUENCE: how many significant changes (time, rule, zone, cancellations).
ALTER TABLE rm_meetings ADD COLUMN sequence bigint NOT NULL DEFAULT 0;
ALTER TABLE rm_meeting_attendees ADD COLUMN occurrence_responses jsonb NOT NULL DEFAULT '{}';
ALTER TABLE rm_agenda ADD COLUMN series jsonb;
ALTER TABLE rm_agenda ADD COLUMN series_ends_at timestamptz;
-- Series are few per person; the range index stays for single meetings.
CREATE INDEX rm_agenda_user_series ON rm_agenda (user_id, starts_at) WHERE series IS NOT NULL;
