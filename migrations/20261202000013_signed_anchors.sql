-- Anchors signed with a key kept outside the database (`MEETINGS_AUDIT_KEY_FILE`, Ed25519):
-- whoever can rewrite the events and recompute every hash and anchor still cannot sign
-- them, so `meetings events verify --public-key` shows the rewrite (ADR 0010).
-- `key_id` names the key (the same derivation as a token key's `kid`); both are NULL on an
-- unsigned anchor.
ALTER TABLE event_anchors ADD COLUMN key_id text, ADD COLUMN signature bytea;
