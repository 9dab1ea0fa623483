-- 004_job_lost.sql - a job whose worker died (no heartbeat, or it rejoined
-- under the same name) ends as 'lost': the coordinator writes that state,
-- which 001's check refused (the job row was not written).
ALTER TABLE jobs DROP CONSTRAINT jobs_state_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_state_check
    CHECK (state IN ('leased', 'done', 'cancelled', 'crashed', 'returned', 'lost'));
