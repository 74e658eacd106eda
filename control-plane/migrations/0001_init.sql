-- 0001: the initial schema. Secrets (content keys, signing secrets, the player-token
-- secret) are stored wrapped with the key-encryption key (AES-256-GCM), never in clear.
CREATE TABLE meta (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
CREATE TABLE titles (
    id      TEXT PRIMARY KEY,
    name    TEXT NOT NULL,
    genres  TEXT NOT NULL,          -- JSON array
    launch  INTEGER,                -- Unix seconds
    regions TEXT NOT NULL           -- JSON array; [] = everywhere
);
CREATE TABLE renditions (
    title        TEXT NOT NULL REFERENCES titles(id) ON DELETE CASCADE,
    id           TEXT NOT NULL,
    codec        TEXT NOT NULL,
    width        INTEGER NOT NULL,
    height       INTEGER NOT NULL,
    bitrate_kbps INTEGER NOT NULL,
    PRIMARY KEY (title, id)
);
CREATE TABLE files (
    key       TEXT PRIMARY KEY,
    title     TEXT NOT NULL REFERENCES titles(id) ON DELETE CASCADE,
    rendition TEXT,                 -- NULL for a title-level file
    seq       INTEGER NOT NULL,     -- playback order
    name      TEXT NOT NULL,
    size      INTEGER NOT NULL,
    sha256    TEXT NOT NULL
);
CREATE INDEX files_by_rendition ON files (title, rendition, seq);
-- Content keys outlive re-imports of their rendition: no foreign key.
CREATE TABLE content_keys (
    rendition  TEXT PRIMARY KEY,    -- title/rendition
    kid        BLOB NOT NULL UNIQUE,
    wrapped    BLOB NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE plans (
    name       TEXT PRIMARY KEY,
    max_height INTEGER NOT NULL
);
INSERT INTO plans (name, max_height) VALUES ('basic', 720), ('standard', 1080), ('premium', 2160);
CREATE TABLE users (
    id         TEXT PRIMARY KEY,
    plan       TEXT NOT NULL REFERENCES plans(name)
);
CREATE TABLE revoked_tokens (
    token_id   TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL
);
CREATE TABLE appliances (
    id            TEXT PRIMARY KEY,
    secret_sha256 BLOB NOT NULL
);
CREATE TABLE signing_keys (
    kid        TEXT PRIMARY KEY,
    seq        INTEGER NOT NULL UNIQUE,
    wrapped    BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    retired_at INTEGER
);
CREATE TABLE views (
    id        INTEGER PRIMARY KEY,
    at        INTEGER NOT NULL,
    user      TEXT NOT NULL,
    rendition TEXT NOT NULL,        -- title/rendition
    region    TEXT NOT NULL
);
CREATE INDEX views_by_time ON views (at);
CREATE TABLE impressions (
    day    INTEGER NOT NULL,
    region TEXT NOT NULL,
    title  TEXT NOT NULL,
    count  INTEGER NOT NULL,
    PRIMARY KEY (day, region, title)
);
