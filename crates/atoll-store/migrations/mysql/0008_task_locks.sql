-- One change at a time per cluster (and per host), enforced by MetaDB: an
-- active task holds its resource's key (`cluster:orders`) in active_target,
-- and a unique index lets only one row hold it (Galera certifies unique keys
-- across nodes, so two servers cannot both take it). A finished or paused
-- task gives it back (NULL; NULLs never clash). Tasks that were active
-- before this migration hold no key. Idempotent like 0005.
-- Keep in step with ../sqlite/0008_task_locks.sql.

ALTER TABLE tasks ADD COLUMN IF NOT EXISTS active_target VARCHAR(255);
CREATE UNIQUE INDEX IF NOT EXISTS tasks_active_target ON tasks (active_target);
