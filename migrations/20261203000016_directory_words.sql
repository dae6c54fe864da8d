-- Directory search by the start of any word of the name or of the email address, whatever the
-- case and accents (docs/api.md `GET /v1/users?q=`). The projector writes the words, folded in
-- Rust (`platform::search::user_words`: the same code folds the query), space-separated; the
-- generated column holds every prefix of each word up to 24 characters (and each word whole).
-- `rm_user_prefixes` has one row per prefix of an active user, keyed in the directory's order,
-- so a page is one ordered index range per query word (merge-joined when there are several),
-- stopping after the page: a one-letter query over 100,000 users reads ~50 entries.
CREATE FUNCTION meetings_word_prefixes(words text) RETURNS text[]
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
    SELECT coalesce(array_agg(DISTINCT prefix), '{}')
    FROM (SELECT left(word, n) AS prefix
          FROM unnest(string_to_array(words, ' ')) word,
               generate_series(1, least(length(word), 24)) n
          UNION ALL
          SELECT word FROM unnest(string_to_array(words, ' ')) word) prefixes
    WHERE prefix <> ''
$$;

ALTER TABLE rm_users ADD COLUMN search_words text NOT NULL DEFAULT '';
-- Existing rows until the projector next writes them (any change of the user, or a replay):
-- lower-cased words of the name without the common Latin accents, and the email address.
UPDATE rm_users SET search_words = trim(
    regexp_replace(
        translate(lower(display_name),
                  'àáâãäåāăąçćčďèéêëēėęěìíîïīįñńňòóôõöøōőùúûüūůűųýÿźżžśšşřťţľĺłğ',
                  'aaaaaaaaacccdeeeeeeeeiiiiiinnnoooooooouuuuuuuuyyzzzsssrttlllg'),
        '[^[:alnum:]]+', ' ', 'g')
    || ' ' || lower(email));
ALTER TABLE rm_users
    ADD COLUMN search_prefixes text[] GENERATED ALWAYS AS (meetings_word_prefixes(search_words)) STORED;
CREATE TABLE rm_user_prefixes (
    prefix    text NOT NULL,
    sort_name text NOT NULL,   -- lower(display_name): the directory's order and cursor
    user_id   uuid NOT NULL,
    PRIMARY KEY (prefix, sort_name, user_id)
);
CREATE INDEX rm_user_prefixes_user ON rm_user_prefixes (user_id);
INSERT INTO rm_user_prefixes (prefix, sort_name, user_id)
SELECT DISTINCT p, lower(display_name), id FROM rm_users, unnest(search_prefixes) p WHERE active;
