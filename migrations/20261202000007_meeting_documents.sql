-- Each meeting as GET /v1/meetings/{id} answers it, rendered by the projector whenever the
-- meeting, its attendees or the name of one of its people change, in the same statement as
-- those rows. A read is then one primary-key lookup that returns stored JSON, instead of a
-- join over attendees and users aggregated per request (BENCHMARKS.md, get-meeting).
-- `members` (organizer and attendees) is who may see the meeting besides admins.
CREATE TABLE rm_meeting_documents (
    meeting_id uuid   PRIMARY KEY REFERENCES rm_meetings (id) ON DELETE CASCADE,
    members    uuid[] NOT NULL,
    version    bigint NOT NULL,
    body       json   NOT NULL
);
