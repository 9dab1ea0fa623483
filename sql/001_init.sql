-- 001_init.sql - the tables: campaigns, their strata, the estimator's state,
-- jobs, workers, and one row per trial. Applied once by pvf db migrate.

CREATE TABLE campaigns (
    id           bigserial PRIMARY KEY,
    created_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    spec_hash    text NOT NULL,
    spec         jsonb NOT NULL,
    model_dir    text,
    model_sha256 text,
    eval_path    text,
    eval_sha256  text,
    arch         text,
    format       text,
    fault        text,
    strata_kind  text CHECK (strata_kind IN ('tensor', 'tensor-bit', 'component', 'component-bit')),
    seed         bigint CHECK (seed >= 0),
    confidence   float8 CHECK (confidence > 0 AND confidence < 1),
    margin       float8,
    rel_margin   float8,
    max_trials   bigint,
    value_kind   text CHECK (value_kind IN ('fraction', 'any')),
    naive        bool,
    state        text NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'done', 'cancelled')),
    epoch        bigint NOT NULL DEFAULT 0
);
COMMENT ON TABLE campaigns IS 'one fault-injection study: model, eval set, fault model, format, stopping rule, seed';
COMMENT ON COLUMN campaigns.spec_hash IS 'hash of the canonical spec: the same spec resumes the same campaign';
COMMENT ON COLUMN campaigns.epoch IS 'bumped by each coordinator that takes the campaign; stamped on leases (fencing)';

CREATE TABLE strata (
    campaign_id bigint NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    stratum     int NOT NULL CHECK (stratum >= 0),
    name        text NOT NULL,
    tensor      text,
    component   text,
    bit         int CHECK (bit >= 0 AND bit < 64),
    targets     text[] NOT NULL,
    population  bigint NOT NULL CHECK (population >= 0),
    weight      float8 NOT NULL CHECK (weight >= 0),
    max_trials  bigint,
    PRIMARY KEY (campaign_id, stratum)
);
COMMENT ON TABLE strata IS 'fault sites estimated together; weight = population share of the campaign';
COMMENT ON COLUMN strata.bit IS 'the bit position of a *-bit stratum; NULL = all bits';
COMMENT ON COLUMN strata.component IS 'the component of the stratum (also set on tensor strata: the tensor''s component)';

CREATE TABLE estimates (
    campaign_id bigint NOT NULL,
    stratum     int NOT NULL,
    trials_done bigint NOT NULL DEFAULT 0,
    trials_used bigint NOT NULL DEFAULT 0,
    estimate    float8,
    lo          float8,
    hi          float8,
    wilson_lo   float8,
    wilson_hi   float8,
    stopped     bool NOT NULL DEFAULT false,
    converged   bool NOT NULL DEFAULT false,
    stop_reason text CHECK (stop_reason IN ('margin', 'rel-margin', 'cap', 'cancelled')),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (campaign_id, stratum),
    FOREIGN KEY (campaign_id, stratum) REFERENCES strata (campaign_id, stratum) ON DELETE CASCADE
);
COMMENT ON COLUMN estimates.trials_used IS 'the contiguous prefix of trial indices the estimator used';

CREATE TABLE workers (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    public_key  text,
    executors   int,
    first_seen  timestamptz NOT NULL DEFAULT now(),
    last_seen   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE jobs (
    campaign_id bigint NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    job_id      bigint NOT NULL,
    stratum     int NOT NULL,
    trial_lo    bigint NOT NULL,
    trial_hi    bigint NOT NULL CHECK (trial_hi >= trial_lo),
    state       text NOT NULL CHECK (state IN ('leased', 'done', 'cancelled', 'crashed', 'returned')),
    attempt     int NOT NULL DEFAULT 0,
    epoch       bigint NOT NULL DEFAULT 0,
    worker_id   bigint REFERENCES workers (id) ON DELETE SET NULL,
    leased_at   timestamptz,
    finished_at timestamptz,
    PRIMARY KEY (campaign_id, job_id)
);
CREATE INDEX jobs_campaign_state ON jobs (campaign_id, state);

-- No foreign key on trials: the per-row key check made inserting 40,960 rows
-- 2.3x slower (PostgreSQL 15, measured); only pvf_db_insert_trials writes
-- here, for strata the coordinator created.
CREATE TABLE trials (
    campaign_id bigint NOT NULL,
    stratum     int NOT NULL,
    trial       bigint NOT NULL CHECK (trial >= 0),
    tensor      text NOT NULL,
    element     bigint NOT NULL,
    mask        bigint NOT NULL,
    old_word    bigint NOT NULL,
    new_word    bigint NOT NULL,
    old_value   real,
    new_value   real,
    value       float8 NOT NULL,
    incorrect   int NOT NULL,
    nonfinite   int NOT NULL,
    flags       int NOT NULL,
    worker_id   bigint,
    attempt     int NOT NULL,
    PRIMARY KEY (campaign_id, stratum, trial)
);
COMMENT ON TABLE trials IS 'one row per trial, written idempotently: a replayed batch adds nothing';
COMMENT ON COLUMN trials.mask IS 'the bits the fault acted on (unsigned 32-bit value; bigint so bit 31 stays positive)';
COMMENT ON COLUMN trials.value IS 'fraction of eval outputs incorrect, in [0, 1]';
COMMENT ON COLUMN trials.flags IS 'PVF_TRIAL_* bits: 1 masked, 2 non-finite output, 4 stored word unchanged';
