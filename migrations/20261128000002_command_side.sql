-- Command-side state that must change in the same transaction as the events it belongs to,
-- but must never travel in events (secrets) or needs a uniqueness guarantee across replicas.

-- Accounts: one row per registered user. The unique email key makes concurrent registrations
-- of one address on several replicas race on a unique index, so exactly one wins.
-- The password hash lives here, not in events: the event log is immutable and fanned out to
-- NATS and websockets, and secrets have no place there (DESIGN.md guarantee 9).
CREATE TABLE accounts (
    user_id          uuid        PRIMARY KEY,
    email_key        text        NOT NULL UNIQUE,      -- normalized (trimmed, lower-cased) email
    password_hash    text        NOT NULL,             -- argon2id PHC string
    active           boolean     NOT NULL DEFAULT true,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- Opaque refresh tokens, stored as SHA-256 of the token. Rotated on every use; presenting a
-- spent token revokes its whole family (token theft detection).
CREATE TABLE refresh_tokens (
    token_hash   bytea       PRIMARY KEY,
    family_id    uuid        NOT NULL,
    user_id      uuid        NOT NULL REFERENCES accounts (user_id),
    issued_at    timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    used_at      timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);

-- Login throttling per (account, client address). Keyed by the normalized email whether or not
-- the account exists, so throttling does not reveal which emails are registered.
CREATE TABLE login_throttle (
    email_key        text        NOT NULL,
    source           text        NOT NULL,
    failures         integer     NOT NULL,
    last_failure_at  timestamptz NOT NULL,
    blocked_until    timestamptz NOT NULL,
    PRIMARY KEY (email_key, source)
);

-- Idempotency keys: the first response to a (principal, key) is kept and replayed. The row is
-- written in the same transaction as the command's events, so a retry can never append twice.
CREATE TABLE idempotency_keys (
    principal      text        NOT NULL,
    key            text        NOT NULL,
    request_hash   bytea       NOT NULL,
    status         smallint    NOT NULL,
    response       jsonb       NOT NULL,
    etag           text,
    location       text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (principal, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
