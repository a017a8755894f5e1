-- Cluster schema. Kept column-for-column equal to the SQLite one so
-- that one set of queries serves both stores.
CREATE TABLE chats (
    id BIGSERIAL PRIMARY KEY,
    kind TEXT NOT NULL,
    name TEXT,
    photo_url TEXT,
    creator TEXT NOT NULL,
    -- For dialogs: the two user ids, sorted, joined by a newline; NULL for groups.
    dialog_key TEXT UNIQUE,
    last_message_id BIGINT NOT NULL DEFAULT 0,
    last_event_id BIGINT NOT NULL DEFAULT 0,
    first_retained_event_id BIGINT NOT NULL DEFAULT 1,
    created_at BIGINT NOT NULL,
    last_activity_at BIGINT NOT NULL
);

CREATE TABLE members (
    chat_id BIGINT NOT NULL,
    user_id TEXT NOT NULL,
    delivered_mark BIGINT NOT NULL DEFAULT 0,
    read_mark BIGINT NOT NULL DEFAULT 0,
    joined_at BIGINT NOT NULL,
    PRIMARY KEY (chat_id, user_id)
);
CREATE INDEX members_by_user ON members (user_id, chat_id);

CREATE TABLE messages (
    chat_id BIGINT NOT NULL,
    message_id BIGINT NOT NULL,
    user_id TEXT NOT NULL,
    client_message_id TEXT NOT NULL,
    body TEXT NOT NULL,
    attachments TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    edited_at BIGINT,
    deleted_at BIGINT,
    PRIMARY KEY (chat_id, message_id),
    UNIQUE (chat_id, user_id, client_message_id)
);

CREATE TABLE events (
    chat_id BIGINT NOT NULL,
    id BIGINT NOT NULL,
    message_id BIGINT NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (chat_id, id)
);
CREATE INDEX events_by_message ON events (chat_id, message_id);

-- One row per mark command that moved a mark: messages first..last got the
-- mark at `at`. Receipts are answered from these ranges.
CREATE TABLE mark_ranges (
    chat_id BIGINT NOT NULL,
    user_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    first_message_id BIGINT NOT NULL,
    last_message_id BIGINT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (chat_id, user_id, kind, last_message_id)
);
CREATE INDEX mark_ranges_by_message ON mark_ranges (chat_id, last_message_id);

CREATE TABLE users (
    user_id TEXT PRIMARY KEY,
    last_seen BIGINT
);
