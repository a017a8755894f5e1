-- Each message's `new` event, so that deleting a message can find the
-- events to redact without an index of every event by message. SQLite's
-- migration fills it in for stored messages and drops that index, one of
-- four that every `new` adds an entry to in a page of the message's chat
-- (docs/benchmarks.md, sixth session of 2026-12-03). Here the column
-- only: filling it in rewrites every message, too long a step for a
-- release's migration Job on a large database, so `events_by_message`
-- stays and serves the messages stored before (NULL here), and the edits.
ALTER TABLE messages ADD COLUMN new_event_id BIGINT;
