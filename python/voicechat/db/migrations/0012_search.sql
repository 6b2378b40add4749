-- Full-text search over plaintext messages (SPEC §3, GET /search/messages; docs/search.md).
--
-- What is indexed: `content`, the plaintext of a message in a channel that is not end-to-end
-- encrypted. Encrypted channels' and DMs' messages hold only `content_enc` (ciphertext the
-- server cannot read), so their `search_vector` is NULL and no index entry exists for them.
--
-- The configuration: `voicechat_search`, PostgreSQL's `simple` (lower-cases, no stemming, no
-- stop words: right for every language a community writes in, where `english` would stem
-- French or Polish words wrongly and drop English stop words only). Prefix queries ("voic" finds "voice") stand
-- in for stemming. The query side must use the same configuration (db/repositories/search.py
-- names it once): a tsquery built with another one would neither use the index nor match.
--
-- Why a STORED generated column and not a trigger plus CREATE INDEX CONCURRENTLY: migrations
-- run in one transaction (db/migrate.py), where CONCURRENTLY is refused; a generated column
-- can never disagree with `content` (edits recompute it), and the rewrite it costs at upgrade
-- is measured in docs/search.md (about 1,000,000 messages: see there). STORED is spelled out:
-- PostgreSQL 18 makes generated columns VIRTUAL by default, and a virtual one has no index.

-- Not `unaccent` yet: an extension's objects live in `public`, which `voicechat backup restore`
-- sets aside (renames) before pg_restore, and moving them takes a superuser; accent folding
-- comes back once restore handles extensions (docs/search.md).
CREATE TEXT SEARCH CONFIGURATION voicechat_search (COPY = pg_catalog.simple);

-- The rewrite and the index build are the upgrade's cost; more sort memory builds the GIN
-- index in fewer passes (this transaction only).
SET LOCAL maintenance_work_mem = '256MB';

ALTER TABLE messages
    ADD COLUMN search_vector tsvector
    GENERATED ALWAYS AS (to_tsvector('voicechat_search'::regconfig, content)) STORED;

CREATE INDEX messages_search_idx ON messages USING gin (search_vector);

-- The prefix query for the last word a user typed, built from its lexemes (never from the
-- user's text): every lexeme is quoted as a tsquery literal (quotes and backslashes doubled)
-- and marked `:*` when it has at least `p_min_length` characters (a one-letter part such as
-- the "l" of "l'été" would otherwise match half the index); shorter ones must match whole.
-- NULL when the word has no lexeme (punctuation only).
CREATE FUNCTION search_prefix_query(p_word text, p_min_length integer) RETURNS tsquery
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT string_agg(
        '''' || replace(replace(t.lexeme, '\', '\\'), '''', '''''') || ''''
            || CASE WHEN length(t.lexeme) >= p_min_length THEN ':*' ELSE '' END,
        ' & ' ORDER BY t.lexeme
    )::tsquery
    FROM unnest(to_tsvector('voicechat_search'::regconfig, p_word)) AS t
$$;
