-- 005_trial_flags.sql - the flags column names every bit a trial row can
-- carry: 001's comment predates the fast path's settled trials and crash
-- outcomes.
COMMENT ON COLUMN trials.flags IS 'PVF_TRIAL_* bits: 1 masked, 2 non-finite output, 4 stored word unchanged, 8 settled without inference (fast path), 256 crash outcome (the trial crashed its worker, or hung past the deadline three times; value 1)';
