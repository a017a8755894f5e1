-- The migration tried on 2026-12-03 and not adopted (see docs/benchmarks.md):
-- messages and events as WITHOUT ROWID tables clustered by their keys.
CREATE TABLE messages_clustered (
    chat_id INTEGER NOT NULL,
    message_id INTEGER NOT NULL,
    user_id TEXT NOT NULL,
    client_message_id TEXT NOT NULL,
    body TEXT NOT NULL,
    attachments TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    edited_at INTEGER,
    deleted_at INTEGER,
    PRIMARY KEY (chat_id, message_id),
    UNIQUE (chat_id, user_id, client_message_id)
) WITHOUT ROWID;
INSERT INTO messages_clustered
    (chat_id, message_id, user_id, client_message_id, body, attachments, created_at, edited_at, deleted_at)
    SELECT chat_id, message_id, user_id, client_message_id, body, attachments, created_at, edited_at, deleted_at
    FROM messages;
DROP TABLE messages;
ALTER TABLE messages_clustered RENAME TO messages;

CREATE TABLE events_clustered (
    chat_id INTEGER NOT NULL,
    id INTEGER NOT NULL,
    message_id INTEGER NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (chat_id, id)
) WITHOUT ROWID;
INSERT INTO events_clustered (chat_id, id, message_id, kind, payload, created_at)
    SELECT chat_id, id, message_id, kind, payload, created_at FROM events;
DROP TABLE events;
ALTER TABLE events_clustered RENAME TO events;
CREATE INDEX events_by_message ON events (chat_id, message_id);
