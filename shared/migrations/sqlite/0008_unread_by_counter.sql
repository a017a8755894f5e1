-- The deleted messages of each chat, by id, so that the unread count of a
-- member who has never written in a chat is the chat's counter less their
-- read mark, less the deleted messages above it (message ids are given one
-- by one per chat, and messages are only removed with their chat),
-- instead of every message above the mark counted: a deletion or a
-- membership change of a group of a million messages, one of whose
-- members had read nothing, took 2.4 s on SQLite (docs/benchmarks-journal.md,
-- forty-seventh session). A message enters the index only when it is
-- deleted: sending costs nothing more.
CREATE INDEX IF NOT EXISTS messages_deleted ON messages (chat_id, message_id) WHERE deleted_at IS NOT NULL;
