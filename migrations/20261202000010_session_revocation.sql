-- Sessions that end everywhere at once (docs/adr/0009-sessions.md).
--
-- `session_version` rises when the user is deactivated, changes password or changes role;
-- access tokens carry the version they were issued at and one below the current version is
-- refused by every service. `sessions_revoked_at` says when it last rose, so services load
-- only the revocations that can still concern an unexpired token.
ALTER TABLE accounts
    ADD COLUMN session_version     integer     NOT NULL DEFAULT 0,
    ADD COLUMN sessions_revoked_at timestamptz;
CREATE INDEX accounts_sessions_revoked ON accounts (sessions_revoked_at)
    WHERE sessions_revoked_at IS NOT NULL;

-- A refresh family ends at an absolute time fixed at login, however often it is rotated.
ALTER TABLE refresh_tokens ADD COLUMN family_expires_at timestamptz;
UPDATE refresh_tokens SET family_expires_at = issued_at + interval '30 days';
ALTER TABLE refresh_tokens ALTER COLUMN family_expires_at SET NOT NULL;
CREATE INDEX refresh_tokens_revoked ON refresh_tokens (revoked_at)
    WHERE revoked_at IS NOT NULL;
