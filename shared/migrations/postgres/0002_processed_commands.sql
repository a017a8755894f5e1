-- Commands already applied, by their unique id, with what they produced:
-- a redelivered stream entry is answered from here instead of being
-- applied twice. Pruned after a day by the retention task.
CREATE TABLE processed_commands (
    id TEXT PRIMARY KEY,
    chat_id BIGINT NOT NULL,
    first_event_id BIGINT NOT NULL,
    last_event_id BIGINT NOT NULL,
    result TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX processed_commands_by_age ON processed_commands (created_at);
