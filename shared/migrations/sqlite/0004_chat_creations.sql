-- A chat creation's `Idempotency-Key`, by its creator: a retried request
-- with the same key gets the chat the first one created instead of a
-- second chat. Pruned after a day by the retention task.
CREATE TABLE chat_creations (
    creator TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    chat_id INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (creator, idempotency_key)
);
CREATE INDEX chat_creations_by_age ON chat_creations (created_at);
