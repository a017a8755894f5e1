-- Chats deleted whose messages, events and marks are still to be purged.
-- A deletion removes the chat's row and members, which every read starts
-- from, and leaves its history here: a chat of millions of messages takes
-- longer to delete than one transaction may hold the chat's lock, or the
-- store's deadline allows. The workers' housekeeping purges it in steps
-- (shared/src/store/purge.rs) and then drops the chat from this table.
CREATE TABLE deleted_chats (
    chat_id BIGINT PRIMARY KEY,
    deleted_at BIGINT NOT NULL
);
