-- The pgvector and pg_trgm self-test, run in a throwaway database by
-- `stack up`/`stack servers` (lib/postgres.sh) and by deploy/check on
-- emulated CPUs: an insert into an HNSW index and a cosine-ordered index
-- scan run exactly the code that dies of SIGILL where the library needs
-- instructions the CPU lacks. One line answers: "5 2 0.53".
SET client_min_messages = warning;
CREATE EXTENSION vector;
CREATE EXTENSION pg_trgm;
CREATE TABLE t (id int PRIMARY KEY, v vector(8));
CREATE INDEX ON t USING hnsw (v vector_cosine_ops);
INSERT INTO t SELECT i, array_fill(i::real, ARRAY[7]) || ARRAY[(i % 3)::real] FROM generate_series(1, 64) i;
SET enable_seqscan = off;
SELECT (SELECT count(*) FROM (SELECT id FROM t ORDER BY v <=> array_fill(1::real, ARRAY[8])::vector LIMIT 5) s)
       || ' ' || ('[1,2,3]'::vector <-> '[1,2,5]'::vector)
       || ' ' || similarity('second brain', 'second brian')::numeric(4,2);
