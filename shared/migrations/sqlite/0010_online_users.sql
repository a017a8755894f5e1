-- Standalone marks each user online here while they are (the time their
-- first connection opened), and clears the mark with their last_seen when
-- the last one closes. A process that dies without closing its
-- connections (kill -9, a power loss) clears no mark, and left the
-- last_seen of the users online then at their previous departure, or
-- null: the next start records those users as last seen at that start,
-- the first moment they are known gone (`Store::settle_left_online`). A
-- cluster keeps presence in Redis, where a dead node's users are reaped,
-- and leaves this column null. The partial index keeps that start's
-- look-up to the users marked, however many there are.
ALTER TABLE users ADD COLUMN online_since BIGINT;
CREATE INDEX users_online ON users (user_id) WHERE online_since IS NOT NULL;
