# Statements that only read: each must be classified read (a replica may run it).
SELECT 1
select * from rt where id = $1
SELECT abalance FROM pgbench_accounts WHERE aid = 4711;
SELECT count(*) FROM rt
WITH a AS (SELECT 1) SELECT * FROM a
WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT * FROM r
VALUES (1), (2)
TABLE rt
SHOW search_path
EXPLAIN SELECT 1
EXPLAIN ANALYZE SELECT * FROM rt
EXPLAIN (ANALYZE, BUFFERS) SELECT * FROM rt
BEGIN READ ONLY
begin transaction read only
START TRANSACTION READ ONLY
BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY
BEGIN READ ONLY; SELECT 1; COMMIT
COMMIT
ROLLBACK
SELECT 'insert into x'
SELECT "update" FROM (SELECT 1 AS "update") s
SELECT now(), lower('X'), upper(v) FROM rt
SELECT * FROM generate_series(1, 3)
SELECT n::numeric(10, 2) FROM rt
SELECT * FROM rt WHERE id IN (1, 2, 3)
SELECT id, row_number() OVER (PARTITION BY v ORDER BY id) FROM rt
SELECT $$ delete $$
SELECT 1 -- delete from rt
SELECT /* update rt */ 1
SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()
SELECT 1; SELECT 2
SELECT * FROM rt WHERE EXISTS (SELECT 1 FROM rt_log)
SELECT coalesce(max(id), 0) FROM rt
SELECT * FROM rt r1 JOIN rt r2 ON r1.id = r2.id
SELECT * FROM rt WHERE v LIKE 'a%' ORDER BY id LIMIT 10 OFFSET 5
SELECT json_build_object('a', 1), jsonb_agg(v) FROM rt
SELECT array_agg(id) FILTER (WHERE n > 0) FROM rt
SELECT CASE WHEN n > 0 THEN 'pos' ELSE 'neg' END FROM rt
SELECT (SELECT count(*) FROM rt) AS c
(SELECT 1) UNION (SELECT 2)
SET search_path = public
SET pgwarden.route = replica
RESET statement_timeout
SELECT current_setting('search_path')
SELECT 1 AS "into"
SELECT E'\\n'
SELECT pg_catalog.lower('A')
SELECT extract(epoch FROM now())
SELECT cast(1 AS int)
SELECT * FROM rt WHERE id = ANY($1)
