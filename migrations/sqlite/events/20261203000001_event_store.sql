-- Embedded mode, the event log and the command side in one SQLite file (`meetings.db`, WAL,
-- synchronous=FULL): what the PostgreSQL migrations 1, 2, 9, 10, 12, 13 and 15 hold, in
-- SQLite's terms. Times are INTEGER microseconds since the epoch (exact, and they compare as
-- numbers); ids are 16-byte BLOBs; JSON is TEXT.

CREATE TABLE events (
    -- The global position's id. One writer connection appends (platform::db::sqlite), so
    -- ids are handed out in commit order and a reader never sees a later id before an
    -- earlier one: no skips without PostgreSQL's xid8 snapshot rule. AUTOINCREMENT: an id is
    -- never reused.
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    aggregate_type  TEXT    NOT NULL,
    aggregate_id    BLOB    NOT NULL,
    sequence        INTEGER NOT NULL CHECK (sequence > 0),
    event_type      TEXT    NOT NULL,
    event_version   TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    metadata        TEXT    NOT NULL,
    event_id        BLOB    NOT NULL UNIQUE,
    recorded_at     INTEGER NOT NULL,
    prev_hash       BLOB,
    hash            BLOB    NOT NULL,
    -- Optimistic concurrency: a second append at the same sequence is a unique violation.
    CONSTRAINT events_sequence UNIQUE (aggregate_type, aggregate_id, sequence)
);

CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are immutable (UPDATE on events)');
END;

CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are immutable (DELETE on events)');
END;

CREATE TABLE accounts (
    user_id              BLOB    PRIMARY KEY,
    email_key            TEXT    NOT NULL UNIQUE,
    password_hash        TEXT    NOT NULL,
    active               INTEGER NOT NULL DEFAULT 1,
    session_version      INTEGER NOT NULL DEFAULT 0,
    sessions_revoked_at  INTEGER,
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL
);
CREATE INDEX accounts_sessions_revoked ON accounts (sessions_revoked_at)
    WHERE sessions_revoked_at IS NOT NULL;

CREATE TABLE refresh_tokens (
    token_hash         BLOB    PRIMARY KEY,
    family_id          BLOB    NOT NULL,
    user_id            BLOB    NOT NULL REFERENCES accounts (user_id),
    issued_at          INTEGER NOT NULL,
    expires_at         INTEGER NOT NULL,
    family_expires_at  INTEGER NOT NULL,
    used_at            INTEGER,
    revoked_at         INTEGER
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);
CREATE INDEX refresh_tokens_revoked ON refresh_tokens (revoked_at) WHERE revoked_at IS NOT NULL;

CREATE TABLE login_throttle (
    email_key        TEXT    NOT NULL,
    source           TEXT    NOT NULL,
    failures         INTEGER NOT NULL,
    last_failure_at  INTEGER NOT NULL,
    blocked_until    INTEGER NOT NULL,
    PRIMARY KEY (email_key, source)
);

CREATE TABLE idempotency_keys (
    principal      TEXT    NOT NULL,
    key            TEXT    NOT NULL,
    request_hash   BLOB    NOT NULL,
    status         INTEGER NOT NULL,
    response       TEXT    NOT NULL,
    etag           TEXT,
    location       TEXT,
    created_at     INTEGER NOT NULL,
    PRIMARY KEY (principal, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

CREATE TABLE snapshots (
    aggregate_type  TEXT    NOT NULL,
    aggregate_id    BLOB    NOT NULL,
    sequence        INTEGER NOT NULL,
    state           TEXT    NOT NULL,
    last_hash       BLOB    NOT NULL,
    taken_at        INTEGER NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id)
);

CREATE TABLE event_anchors (
    position     TEXT    PRIMARY KEY,
    events       INTEGER NOT NULL CHECK (events > 0),
    chain        BLOB    NOT NULL,
    recorded_at  INTEGER NOT NULL,
    key_id       TEXT,
    signature    BLOB
);

CREATE TRIGGER event_anchors_no_update BEFORE UPDATE ON event_anchors
BEGIN
    SELECT RAISE(ABORT, 'event_anchors rows are immutable (UPDATE on event_anchors)');
END;

CREATE TRIGGER event_anchors_no_delete BEFORE DELETE ON event_anchors
BEGIN
    SELECT RAISE(ABORT, 'event_anchors rows are immutable (DELETE on event_anchors)');
END;

CREATE TABLE calendar_feeds (
    user_id     BLOB    PRIMARY KEY,
    token_hash  BLOB    NOT NULL UNIQUE,
    token       TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
);
