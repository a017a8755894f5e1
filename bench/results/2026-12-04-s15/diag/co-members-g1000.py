#!/usr/bin/env python3
"""The co-members statement before and after `dabcbc3`, on a table of
19,000 memberships in chats of 1,000 (analyzed), in the machine's
PostgreSQL (database s15_explain, made for it): EXPLAIN ANALYZE five times
each, the median execution time and the rows returned. Usage:
    psql -h 127.0.0.1 -U postgres -c 'CREATE DATABASE s15_explain'
    python3 co-members-g1000.py > co-members-g1000.txt
"""
import json
import re
import subprocess

DB = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "s15_explain"]
SETUP = """
DROP TABLE IF EXISTS m3;
CREATE TABLE m3 (chat_id bigint NOT NULL, user_id text NOT NULL, joined_at bigint, PRIMARY KEY (chat_id, user_id));
CREATE INDEX m3_by_user ON m3 (user_id, chat_id);
INSERT INTO m3 SELECT g/1000, 'u' || g, 0 FROM generate_series(0, 18999) g;
ANALYZE m3;
"""


def run(users, label):
    keys = json.dumps([{"c1": u} for u in users])
    v = f"(SELECT r->>'c1' AS column1 FROM jsonb_array_elements('{keys}'::jsonb) AS r)"
    statements = {
        "pairs": f"SELECT DISTINCT m.user_id, o.user_id FROM {v} AS v JOIN m3 m ON m.user_id = v.column1 "
        "JOIN m3 o ON o.chat_id = m.chat_id WHERE o.user_id <> m.user_id",
        "by chat": f"SELECT c.chat_id, o.user_id FROM (SELECT DISTINCT m.chat_id FROM {v} AS v CROSS JOIN LATERAL "
        "(SELECT chat_id FROM m3 WHERE user_id = v.column1 OFFSET 0) AS m) AS c CROSS JOIN LATERAL "
        "(SELECT user_id FROM m3 o WHERE o.chat_id = c.chat_id OFFSET 0) AS o",
    }
    for name, sql in statements.items():
        times, rows = [], None
        for _ in range(5):
            out = subprocess.run(DB + ["-c", "EXPLAIN ANALYZE " + sql], capture_output=True, text=True, check=True).stdout
            times.append(float(re.search(r"Execution Time: ([\d.]+)", out).group(1)))
            rows = re.search(r"actual time=[\d.]+\.\.[\d.]+ rows=(\d+)", out).group(1)
        print(f"{label:40} {name:8} rows {rows:>7} exec ms median {sorted(times)[2]:.2f}")


subprocess.run(DB + ["-q", "-c", SETUP], check=True)
run([f"u{i}" for i in range(3000, 3064)], "64 users of one chat of 1,000")
run([f"u{i}" for i in range(0, 19000, 297)][:64], "64 users spread over 19 chats of 1,000")
run([f"u{i}" for i in range(3000, 3008)], "8 users of one chat of 1,000")
