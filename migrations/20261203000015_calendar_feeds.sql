-- Secret calendar feed addresses (GET /v1/calendar/feeds/{token}.ics), one per user.
-- Not a read model: a token is a credential, not a fact of the event log (which is exported
-- for audits), so it is kept here and a replay leaves it alone. Lookups go by the token's
-- SHA-256; the token itself is kept to show the owner their address again — whoever can read
-- this table can read the meetings the feed would show anyway.
CREATE TABLE calendar_feeds (
    user_id     uuid        PRIMARY KEY,
    token_hash  bytea       NOT NULL UNIQUE,
    token       text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
