-- How many members a chat has, and the membership version it was counted
-- at (migration 0006), set under the chat's row lock at its creation and
-- at every membership change, so that a user's chat list need not count
-- each chat's members. Counted, the list of a user in 21 groups of
-- 10,000 (ten read at once) cost PostgreSQL 0.74-0.82 s, about half of it
-- the count: members' rows, whose marks change all the time, are rarely
-- all-visible, so the count visits every one; the rest was compiling the
-- statement, whose cost the count made look high enough for JIT
-- (docs/benchmarks-journal.md, forty-eighth session). The count is
-- used only while its version is the chat's: a chat made before this
-- migration (NULL), or changed since by a binary older than it (a
-- rollback), is counted as before until its next membership change.
-- Nothing is filled in here: that would read every membership in one
-- statement, too long a step for a release's migration on a large
-- database (docs/operations.md gives a batched UPDATE).
ALTER TABLE chats ADD COLUMN member_count BIGINT;
ALTER TABLE chats ADD COLUMN member_count_version BIGINT;
