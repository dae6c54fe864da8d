-- Embedded mode, the read models in their own SQLite file (`meetings-read-models.db`, WAL,
-- synchronous=NORMAL: everything here is rebuilt from the event log, so a power cut may lose
-- the last batches, which the projector then applies again). The tables of the PostgreSQL
-- migrations 3, 4, 7, 11, 14 and 16 in SQLite's terms: times are INTEGER microseconds, ids
-- 16-byte BLOBs, JSON is TEXT, positions TEXT (32 hex digits: they sort as strings). The
-- arrays PostgreSQL keeps in a column (an event's audience, a document's members, a user's
-- search prefixes) are rows of their own tables here.

CREATE TABLE projection_checkpoints (
    projection       TEXT    PRIMARY KEY,
    position         TEXT    NOT NULL,
    stream_sequence  INTEGER,
    updated_at       INTEGER NOT NULL,
    failed_at        INTEGER,
    failure          TEXT
);

CREATE TABLE projection_sequences (
    projection      TEXT    NOT NULL,
    aggregate_type  TEXT    NOT NULL,
    aggregate_id    BLOB    NOT NULL,
    last_sequence   INTEGER NOT NULL,
    PRIMARY KEY (projection, aggregate_type, aggregate_id)
) WITHOUT ROWID;

CREATE TABLE rm_users (
    id             BLOB    PRIMARY KEY,
    email          TEXT    NOT NULL,
    email_key      TEXT    NOT NULL,
    display_name   TEXT    NOT NULL,
    sort_name      TEXT    NOT NULL,   -- lower(display_name), folded as platform::search does
    time_zone      TEXT    NOT NULL,
    role           TEXT    NOT NULL,
    working_hours  TEXT,
    active         INTEGER NOT NULL,
    version        INTEGER NOT NULL,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    search_words   TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX rm_users_email_key ON rm_users (email_key);
CREATE INDEX rm_users_directory ON rm_users (sort_name, id) WHERE active;

-- One row per word prefix of an active user's name and email (platform::search).
CREATE TABLE rm_user_prefixes (
    prefix     TEXT NOT NULL,
    sort_name  TEXT NOT NULL,
    user_id    BLOB NOT NULL,
    PRIMARY KEY (prefix, sort_name, user_id)
) WITHOUT ROWID;
CREATE INDEX rm_user_prefixes_user ON rm_user_prefixes (user_id);

CREATE TABLE rm_meetings (
    id             BLOB    PRIMARY KEY,
    organizer_id   BLOB    NOT NULL,
    title          TEXT    NOT NULL,
    title_key      TEXT    NOT NULL,   -- the title lower-cased: `GET /v1/meetings?q=`
    description    TEXT,
    starts_at      INTEGER NOT NULL,
    ends_at        INTEGER NOT NULL,
    time_zone      TEXT    NOT NULL,
    location       TEXT,
    status         TEXT    NOT NULL,
    recurrence     TEXT,
    occurrences    TEXT    NOT NULL DEFAULT '{}',
    sequence       INTEGER NOT NULL DEFAULT 0,
    cancel_reason  TEXT,
    version        INTEGER NOT NULL,
    position       TEXT    NOT NULL,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
);
CREATE INDEX rm_meetings_organizer ON rm_meetings (organizer_id, starts_at);
CREATE INDEX rm_meetings_starts_at ON rm_meetings (starts_at);

CREATE TABLE rm_meeting_attendees (
    meeting_id            BLOB    NOT NULL REFERENCES rm_meetings (id) ON DELETE CASCADE,
    user_id               BLOB    NOT NULL,
    optional              INTEGER NOT NULL,
    response              TEXT    NOT NULL,
    comment               TEXT,
    occurrence_responses  TEXT    NOT NULL DEFAULT '{}',
    PRIMARY KEY (meeting_id, user_id)
) WITHOUT ROWID;
CREATE INDEX rm_meeting_attendees_user ON rm_meeting_attendees (user_id);

CREATE TABLE rm_agenda (
    user_id         BLOB    NOT NULL,
    meeting_id      BLOB    NOT NULL,
    starts_at       INTEGER NOT NULL,
    ends_at         INTEGER NOT NULL,
    title           TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    is_organizer    INTEGER NOT NULL,
    my_response     TEXT,
    series          TEXT,
    series_ends_at  INTEGER,
    PRIMARY KEY (user_id, meeting_id)
) WITHOUT ROWID;
CREATE INDEX rm_agenda_user_time ON rm_agenda (user_id, starts_at);
CREATE INDEX rm_agenda_user_series ON rm_agenda (user_id, starts_at) WHERE series IS NOT NULL;

CREATE TABLE rm_chat_messages (
    meeting_id  BLOB    NOT NULL,
    message_id  BLOB    NOT NULL,
    author_id   BLOB    NOT NULL,
    text        TEXT    NOT NULL,
    posted_at   INTEGER NOT NULL,
    position    TEXT    NOT NULL,
    PRIMARY KEY (meeting_id, message_id)
) WITHOUT ROWID;
CREATE INDEX rm_chat_messages_order ON rm_chat_messages (meeting_id, position);

CREATE TABLE rm_changes (
    position        TEXT    PRIMARY KEY,
    event_id        BLOB    NOT NULL UNIQUE,
    event_type      TEXT    NOT NULL,
    aggregate_type  TEXT    NOT NULL,
    aggregate_id    BLOB    NOT NULL,
    sequence        INTEGER NOT NULL,
    recorded_at     INTEGER NOT NULL,
    data            TEXT    NOT NULL
) WITHOUT ROWID;
CREATE INDEX rm_changes_aggregate_position ON rm_changes (aggregate_id, position);

-- Who may see a change: PostgreSQL's `audience uuid[]` with its GIN index, as rows keyed the
-- way `/v1/changes` reads them (a user's changes after a position).
CREATE TABLE rm_change_audience (
    user_id   BLOB NOT NULL,
    position  TEXT NOT NULL REFERENCES rm_changes (position) ON DELETE CASCADE,
    PRIMARY KEY (user_id, position)
) WITHOUT ROWID;
CREATE INDEX rm_change_audience_position ON rm_change_audience (position);

CREATE TABLE rm_meeting_documents (
    meeting_id  BLOB    PRIMARY KEY REFERENCES rm_meetings (id) ON DELETE CASCADE,
    members     TEXT    NOT NULL,   -- JSON array of user ids
    version     INTEGER NOT NULL,
    body        TEXT    NOT NULL
);
