# Statements that write (or cannot be shown not to): every one must go to
# the primary, also with a leading comment and with a replica hint.
# One per line; "\n" is a newline, {n} a number unique per run.
# Lines starting "fn " write only through a user function: a replica hint
# trusts such calls (the hint is the user's word), so they are not hinted.
INSERT INTO rt (v) VALUES ('a')
insert into rt(v) values ('select')
UPDATE rt SET n = n + 1 WHERE id = 1
DELETE FROM rt WHERE v = 'nothing'
SELECT nextval('rt_seq')
select NEXTVAL('rt_seq'::regclass)
SELECT setval('rt_seq', 100)
SELECT * FROM rt WHERE id = 1 FOR UPDATE
SELECT * FROM rt FOR SHARE
SELECT * FROM rt FOR NO KEY UPDATE
SELECT * FROM rt FOR KEY SHARE
SELECT * FROM rt FOR UPDATE SKIP LOCKED
SELECT * FROM rt WHERE id = 1 FOR\nUPDATE
SELECT/*x*/*/*y*/FROM rt FOR/**/UPDATE
SELECT * FROM rt WHERE v = 'FOR UPDATE' FOR UPDATE
SELECT 1 FROM rt FOR UPDATE OF rt
SELECT * FROM rt WHERE id IN (SELECT id FROM rt FOR UPDATE)
WITH x AS (INSERT INTO rt (v) VALUES ('cte') RETURNING id) SELECT * FROM x
WITH x AS (UPDATE rt SET n = 0 WHERE id < 0 RETURNING *) SELECT count(*) FROM x
WITH x AS (DELETE FROM rt WHERE id < 0 RETURNING *) SELECT * FROM x
WITH RECURSIVE r AS (SELECT 1), w AS (INSERT INTO rt_log VALUES ('r') RETURNING 1) SELECT * FROM r, w
WITH x AS MATERIALIZED (DELETE FROM rt WHERE false RETURNING 1) SELECT 1
WITH u AS (UPDATE rt SET n = n WHERE false RETURNING 1) VALUES (1)
WITH a AS (SELECT 1) INSERT INTO rt_log SELECT 'w' FROM a
with a as (select 1), b as (select 2) delete from rt where false
fn SELECT rt_write('x')
fn SELECT * FROM rt_write('y')
fn select public.rt_write('z')
fn SELECT "public".rt_write('q')
fn SELECT rt_write(v) FROM rt LIMIT 1
fn SELECT upper(rt_write('u')::text)
fn SELECT count(*) FROM rt WHERE rt_write('w') = 1
fn select * from rt cross join lateral rt_write('lat') AS l
fn SELECT gen_random_uuid(), rt_write('g')
fn SELECT 1 WHERE EXISTS (SELECT rt_write('e'))
fn SELECT rt_write('from select') AS x, 'INSERT' AS y
fn SELECT coalesce(rt_write('c'), 0)
fn SELECT (SELECT rt_write('sub'))
fn SELECT rt_write  ('space')
fn SELECT rt_write/*c*/('comment')
fn VALUES (rt_write('values'))
fn SELECT 1 UNION ALL SELECT rt_write('union')
fn SELECT sum(rt_write('agg'))
SELECT 1; INSERT INTO rt_log VALUES ('multi')
SELECT 1; SELECT nextval('rt_seq')
SELECT 'insert'; UPDATE rt SET n = 1 WHERE false
SELECT $$;$$; DELETE FROM rt WHERE false
SELECT 1 /* ; */ ; INSERT INTO rt_log VALUES ('c')
SELECT '--'; INSERT INTO rt_log VALUES ('d')
SELECT '/*'; INSERT INTO rt_log VALUES ('e') --*/
SELECT 'a\'; INSERT INTO rt_log VALUES ('bs') --'
SELECT $a$ $$ $a$; INSERT INTO rt_log VALUES ('dollar')
SELECT $a$ $b$ $a$; UPDATE rt SET n = n WHERE false
SELECT "insert" FROM (SELECT 1 AS "insert") s; DELETE FROM rt WHERE false
SELECT 1 AS "a;b"; UPDATE rt SET n = n WHERE false
SELECT 1 AS "a""b"; INSERT INTO rt_log VALUES ('quote')
  (SELECT 1) ; INSERT INTO rt_log VALUES ('paren')
TABLE rt; INSERT INTO rt_log VALUES ('table')
SHOW search_path; INSERT INTO rt_log VALUES ('show')
VALUES (1); DELETE FROM rt WHERE false
SELECT 1;;INSERT INTO rt_log VALUES ('empty')
SELECT 1;\nINSERT INTO rt_log VALUES ('newline')
SELECT E'\''; INSERT INTO rt_log VALUES ('estring')
SELECT E'\\'; UPDATE rt SET n = n WHERE false
SELECT U&'\0041'; DELETE FROM rt WHERE false
SELECT 'it''s'; INSERT INTO rt_log VALUES ('doubled')
SELECT 1 -- comment ; SELECT 2\n; INSERT INTO rt_log VALUES ('linecomment')
SELECT /* /* nested */ ; */ 1; INSERT INTO rt_log VALUES ('nested')
BEGIN; INSERT INTO rt_log VALUES ('tx'); COMMIT
START TRANSACTION; UPDATE rt SET n = n WHERE false; COMMIT
BEGIN READ WRITE; INSERT INTO rt_log VALUES ('rw'); COMMIT
BEGIN ISOLATION LEVEL READ COMMITTED; INSERT INTO rt_log VALUES ('iso'); COMMIT
BEGIN READ ONLY; COMMIT; INSERT INTO rt_log VALUES ('after ro')
SELECT (SELECT nextval('rt_seq'))
SELECT * FROM (SELECT nextval('rt_seq')) s
SELECT E'\'' , nextval('rt_seq')
SELECT 1 UNION ALL SELECT nextval('rt_seq')
SELECT CASE WHEN true THEN nextval('rt_seq') END
SELECT ARRAY(SELECT nextval('rt_seq'))
select/**/nextval('rt_seq')
SELECT	nextval('rt_seq')
SeLeCt NeXtVaL('rt_seq')
SELECT pg_catalog.nextval('rt_seq')
SELECT nextval ('rt_seq')
SELECT "nextval"('rt_seq')
VALUES (nextval('rt_seq'))
SELECT nextval('rt_seq') -- pgwarden:route=replica
SELECT pg_advisory_xact_lock(1)
SELECT pg_try_advisory_xact_lock(2)
SELECT pg_advisory_xact_lock_shared(3)
SELECT txid_current()
SELECT pg_current_xact_id()
SELECT set_config('application_name', 'x', true)
SELECT lo_create(0)
SELECT pg_notify('rt_ch', 'x')
NOTIFY rt_ch
EXPLAIN ANALYZE INSERT INTO rt_log VALUES ('ex')
EXPLAIN (ANALYZE) DELETE FROM rt WHERE false
EXPLAIN (ANALYZE, BUFFERS) UPDATE rt SET n = n WHERE false
EXPLAIN ANALYZE SELECT nextval('rt_seq')
EXPLAIN ANALYZE WITH x AS (INSERT INTO rt_log VALUES ('exw') RETURNING 1) SELECT * FROM x
INSERT INTO rt (v) SELECT v FROM rt LIMIT 1
INSERT INTO rt (v) VALUES ('a') ON CONFLICT DO NOTHING
INSERT INTO rt_log SELECT 'select' WHERE true
INSERT INTO rt_log VALUES ($$ SELECT $$)
UPDATE rt SET v = 'select * from x' WHERE id = -1
UPDATE rt SET v = (SELECT 'x') WHERE false
DELETE FROM rt_log WHERE msg = 'never'
/* select */ DELETE FROM rt WHERE id = -1
-- select 1\nUPDATE rt SET n = n WHERE id = -1
MERGE INTO rt USING (SELECT 1 AS id) s ON rt.id = s.id WHEN MATCHED THEN UPDATE SET n = rt.n WHEN NOT MATCHED THEN DO NOTHING
SELECT 1 AS x INTO rt_into_{n}
SELECT * INTO rt_into2_{n} FROM rt LIMIT 0
select 1 as x into unlogged rt_into3_{n}
CREATE TABLE rt_new_{n} (x int)
CREATE TABLE rt_as_{n} AS SELECT 1 AS x
DROP TABLE IF EXISTS rt_nothing
ALTER TABLE rt ALTER COLUMN n SET DEFAULT 0
TRUNCATE rt_log
CREATE INDEX IF NOT EXISTS rt_idx ON rt (v)
VACUUM rt_log
ANALYZE rt_log
GRANT SELECT ON rt TO PUBLIC
REVOKE SELECT ON rt FROM PUBLIC
COMMENT ON TABLE rt IS 'x'
COMMENT ON COLUMN rt.v IS 'select'
REINDEX TABLE rt_log
DO $$ BEGIN INSERT INTO rt_log VALUES ('do'); END $$
DO $body$ BEGIN PERFORM nextval('rt_seq'); END $body$
CALL rt_proc()
call rt_proc ( )
SECURITY LABEL FOR nothing ON TABLE rt IS 'x'
CREATE OR REPLACE VIEW rt_view AS SELECT * FROM rt
CREATE SEQUENCE IF NOT EXISTS rt_seq2
ALTER SEQUENCE rt_seq2 RESTART
CLUSTER rt_log
REFRESH MATERIALIZED VIEW rt_mv
LOCK TABLE rt_log
IMPORT FOREIGN SCHEMA nothing FROM SERVER nothing INTO public
CHECKPOINT
SET ROLE pgw_trust
set session authorization pgw_trust
SET LOCAL ROLE pgw_trust
