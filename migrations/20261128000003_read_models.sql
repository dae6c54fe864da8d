-- Read models, maintained by the projector from the event stream and rebuildable from the
-- event store at any time. The query-service reads only these tables.
--
-- Positions are stored as the 32-hex-digit text of platform::store::Position, which sorts in
-- global order under the C collation.

-- Where each projection stands. The read-model change, this checkpoint and the per-aggregate
-- sequences below commit in one transaction (DESIGN.md guarantee 5).
CREATE TABLE projection_checkpoints (
    projection  text        PRIMARY KEY,
    position    text        COLLATE "C" NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    -- Set when the projection stopped on an event it cannot apply (it never skips one).
    failed_at   timestamptz,
    failure     text
);

-- Last applied sequence per aggregate: a redelivered event (sequence <= last) is a no-op, a
-- gap (sequence > last + 1) stops the projection.
CREATE TABLE projection_sequences (
    projection      text   NOT NULL,
    aggregate_type  text   NOT NULL,
    aggregate_id    uuid   NOT NULL,
    last_sequence   bigint NOT NULL,
    PRIMARY KEY (projection, aggregate_type, aggregate_id)
);

-- The user directory and profiles.
CREATE TABLE rm_users (
    id             uuid        PRIMARY KEY,
    email          text        NOT NULL,
    email_key      text        NOT NULL,
    display_name   text        NOT NULL,
    time_zone      text        NOT NULL,
    role           text        NOT NULL,
    working_hours  jsonb,
    active         boolean     NOT NULL,
    version        bigint      NOT NULL,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL
);
CREATE INDEX rm_users_display_name ON rm_users (lower(display_name) text_pattern_ops);
CREATE INDEX rm_users_email_key ON rm_users (email_key text_pattern_ops);

-- Meetings with their current details.
CREATE TABLE rm_meetings (
    id            uuid        PRIMARY KEY,
    organizer_id  uuid        NOT NULL,
    title         text        NOT NULL,
    description   text,
    starts_at     timestamptz NOT NULL,
    ends_at       timestamptz NOT NULL,
    time_zone     text        NOT NULL,
    location      text,
    status        text        NOT NULL,   -- scheduled | in_progress | ended | cancelled
    recurrence    jsonb,
    cancel_reason text,
    version       bigint      NOT NULL,
    position      text        COLLATE "C" NOT NULL,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);
CREATE INDEX rm_meetings_organizer ON rm_meetings (organizer_id, starts_at);
CREATE INDEX rm_meetings_starts_at ON rm_meetings (starts_at);

CREATE TABLE rm_meeting_attendees (
    meeting_id  uuid    NOT NULL REFERENCES rm_meetings (id) ON DELETE CASCADE,
    user_id     uuid    NOT NULL,
    optional    boolean NOT NULL,
    response    text    NOT NULL,         -- needs_action | accepted | declined | tentative
    comment     text,
    PRIMARY KEY (meeting_id, user_id)
);
CREATE INDEX rm_meeting_attendees_user ON rm_meeting_attendees (user_id);

-- Each user's agenda: one row per meeting they organize or attend, denormalized so a week's
-- agenda is one index range scan. Free/busy is read from it too (busy = not cancelled and
-- not declined).
CREATE TABLE rm_agenda (
    user_id      uuid        NOT NULL,
    meeting_id   uuid        NOT NULL,
    starts_at    timestamptz NOT NULL,
    ends_at      timestamptz NOT NULL,
    title        text        NOT NULL,
    status       text        NOT NULL,
    is_organizer boolean     NOT NULL,
    my_response  text,                    -- NULL for the organizer
    PRIMARY KEY (user_id, meeting_id)
);
CREATE INDEX rm_agenda_user_time ON rm_agenda (user_id, starts_at);

-- In-meeting chat history.
CREATE TABLE rm_chat_messages (
    meeting_id  uuid        NOT NULL,
    message_id  uuid        NOT NULL,
    author_id   uuid        NOT NULL,
    text        text        NOT NULL,
    posted_at   timestamptz NOT NULL,
    position    text        COLLATE "C" NOT NULL,
    PRIMARY KEY (meeting_id, message_id)
);
CREATE INDEX rm_chat_messages_order ON rm_chat_messages (meeting_id, position);

-- Every event with the users allowed to see it, for GET /v1/changes: a meeting's events are
-- visible to its organizer and attendees at the time (a removed attendee sees the removal),
-- a user's events to that user. Admins see everything.
CREATE TABLE rm_changes (
    position        text        COLLATE "C" PRIMARY KEY,
    event_id        uuid        NOT NULL UNIQUE,
    event_type      text        NOT NULL,
    aggregate_type  text        NOT NULL,
    aggregate_id    uuid        NOT NULL,
    sequence        bigint      NOT NULL,
    recorded_at     timestamptz NOT NULL,
    data            jsonb       NOT NULL,
    audience        uuid[]      NOT NULL
);
CREATE INDEX rm_changes_audience ON rm_changes USING gin (audience);

-- The relay's progress per stream: the last position JetStream acknowledged. Written through
-- the connection that holds the relay's advisory lock, so a relay that lost the lock cannot
-- move it.
CREATE TABLE relay_checkpoints (
    stream      text        PRIMARY KEY,
    position    text        COLLATE "C" NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
