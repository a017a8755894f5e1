-- What a chat creation under an `Idempotency-Key` asked for (a SHA-256 of
-- its kind, name, photo and members), so that the key reused for a
-- different request is refused instead of answered with the first one's
-- chat. NULL for keys stored by an older binary: those are not compared.
ALTER TABLE chat_creations ADD COLUMN request_digest TEXT;
