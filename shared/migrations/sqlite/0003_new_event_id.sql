-- Each message's `new` event, so that deleting a message finds the events
-- to redact by key instead of through an index of every event by message.
-- That index was one of four that every `new` adds an entry to, each in a
-- page of the message's chat, so a batch over many chats wrote that many
-- more pages (docs/benchmarks.md, sixth session of 2026-12-03). Edits are
-- rare and keep an index of their own. NULL for a message whose `new`
-- event was pruned before this migration, or stored by an older binary (a
-- delete then looks its event up among the chat's events).
-- (PostgreSQL's migration adds the column only.)
ALTER TABLE messages ADD COLUMN new_event_id INTEGER;
UPDATE messages SET new_event_id = (
    SELECT e.id FROM events e
    WHERE e.chat_id = messages.chat_id AND e.message_id = messages.message_id AND e.kind = 'new'
);
CREATE INDEX events_edits_by_message ON events (chat_id, message_id) WHERE kind = 'edit';
DROP INDEX events_by_message;
