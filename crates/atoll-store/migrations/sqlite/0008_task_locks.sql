-- One change at a time per cluster (and per host), enforced by MetaDB: an
-- active task holds its resource's key (`cluster:orders`) in active_target,
-- and a unique index lets only one row hold it. A finished or paused task
-- gives it back (NULL; NULLs never clash). Tasks that were active before
-- this migration hold no key. Keep in step with ../mysql/0008_task_locks.sql.

ALTER TABLE tasks ADD COLUMN active_target TEXT;
CREATE UNIQUE INDEX IF NOT EXISTS tasks_active_target ON tasks (active_target);
