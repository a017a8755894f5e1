-- A chat's membership changes, counted: 1 when it is created, one more
-- for every member added or removed and for its deletion, each under the
-- chat's row lock. The `chats` list frames carry it, so that a gateway
-- can drop a change that reaches it after a later one (two changes made
-- through two gateways are published in no particular order).
ALTER TABLE chats ADD COLUMN membership_version BIGINT NOT NULL DEFAULT 1;
