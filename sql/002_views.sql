-- 002_views.sql - reporting views. Every estimate view has, per row: trials
-- used, estimate, interval (lo, hi), stopped, converged, and interval_kind:
--   'cs'            the estimator's anytime-valid confidence sequence (a stratum,
--                   or the population-weighted combination of strata, whose
--                   Bonferroni-split intervals hold together)
--   'wilson-trials' computed here from the trial rows: 95 % Wilson intervals,
--                   fixed-n, for a grouping the strata do not follow.

-- Wilson score interval of a mean p of n values in [0, 1] at normal quantile z
-- (the same as pvf_wilson in common/stats.c).
CREATE FUNCTION pvf_wilson_lo(p float8, n bigint, z float8 DEFAULT 1.959963984540054)
RETURNS float8 LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN n <= 0 OR p IS NULL THEN 0.0 ELSE greatest(0.0, least(p,
        ((p + z * z / (2.0 * n)) - z * sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n)))
        / (1.0 + z * z / n))) END
$$;
CREATE FUNCTION pvf_wilson_hi(p float8, n bigint, z float8 DEFAULT 1.959963984540054)
RETURNS float8 LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN n <= 0 OR p IS NULL THEN 1.0 ELSE least(1.0, greatest(p,
        ((p + z * z / (2.0 * n)) + z * sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n)))
        / (1.0 + z * z / n))) END
$$;

-- Standard normal quantile (Acklam's rational approximation, relative error
-- below 1.2e-9), for Leveugle's sample size at a campaign's confidence.
CREATE FUNCTION pvf_normal_quantile(p float8)
RETURNS float8 LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
    q float8;
    r float8;
BEGIN
    IF p <= 0 OR p >= 1 THEN
        RETURN NULL;
    END IF;
    IF p < 0.02425 OR p > 1 - 0.02425 THEN
        q := sqrt(-2 * ln(least(p, 1 - p)));
        r := (((((-7.784894002430293e-03 * q - 3.223964580411365e-01) * q - 2.400758277161838e+00) * q
               - 2.549732539343734e+00) * q + 4.374664141464968e+00) * q + 2.938163982698783e+00)
             / ((((7.784695709041462e-03 * q + 3.224671290700398e-01) * q + 2.445134137142996e+00) * q
               + 3.754408661907416e+00) * q + 1);
        RETURN CASE WHEN p < 0.5 THEN r ELSE -r END;
    END IF;
    q := p - 0.5;
    r := q * q;
    RETURN (((((-3.969683028665376e+01 * r + 2.209460984245205e+02) * r - 2.759285104469687e+02) * r
              + 1.383577518672690e+02) * r - 3.066479806614716e+01) * r + 2.506628277459239e+00) * q
           / (((((-5.447609879822406e+01 * r + 1.615858368580409e+02) * r - 1.556989798598866e+02) * r
              + 6.680131188771972e+01) * r - 1.328068155288572e+01) * r + 1);
END
$$;

-- Leveugle et al. (DATE 2009): trials for margin e at confidence c over a
-- population N, at the worst case p = 0.5: N / (1 + e^2 (N - 1) / (t^2 p (1 - p))).
CREATE FUNCTION pvf_leveugle_n(population bigint, margin float8, confidence float8)
RETURNS bigint LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN population IS NULL OR margin IS NULL OR margin <= 0 OR confidence IS NULL
                     OR confidence <= 0 OR confidence >= 1 THEN NULL
                ELSE ceil(population / (1 + margin * margin * (population - 1)
                     / (pvf_normal_quantile(0.5 + confidence / 2) ^ 2 * 0.25)))::bigint END
$$;

-- Per stratum: the estimator's figures (a stratum without an estimates row
-- yet shows 0 trials and no interval).
CREATE VIEW pvf_stratum_estimate AS
SELECT s.campaign_id, s.stratum, s.name, s.tensor, s.component, s.bit, s.population, s.weight,
       s.max_trials,
       coalesce(e.trials_done, 0) AS trials_done,
       coalesce(e.trials_used, 0) AS trials_used,
       e.estimate, e.lo, e.hi, e.wilson_lo, e.wilson_hi,
       coalesce(e.stopped, false) AS stopped,
       coalesce(e.converged, false) AS converged,
       e.stop_reason,
       pvf_leveugle_n(s.population, c.margin, c.confidence) AS leveugle_n,
       'cs'::text AS interval_kind
FROM strata s
JOIN campaigns c ON c.id = s.campaign_id
LEFT JOIN estimates e ON e.campaign_id = s.campaign_id AND e.stratum = s.stratum;

-- Trials per (stratum, tensor) and per (stratum, bit), with the post-
-- stratification weight w_h * n_hk / n_h: the share of stratum h's population
-- estimated to fall in group k (its share of the stratum's uniform draws).
-- With one stratum per group this is the plain mean of the trials.
CREATE VIEW pvf_trial_groups AS
WITH g AS (
    SELECT t.campaign_id, t.stratum, 'tensor'::text AS by, t.tensor AS key, NULL::int AS bit,
           count(*) AS n, avg(t.value) AS mean
    FROM trials t
    GROUP BY t.campaign_id, t.stratum, t.tensor
    UNION ALL
    SELECT t.campaign_id, t.stratum, 'bit', NULL,
           round(ln((t.mask & -t.mask)::float8) / ln(2.0))::int, count(*), avg(t.value)
    FROM trials t
    WHERE t.mask <> 0
    GROUP BY t.campaign_id, t.stratum, round(ln((t.mask & -t.mask)::float8) / ln(2.0))::int
)
SELECT g.campaign_id, g.stratum, g.by, g.key, g.bit, g.n, g.mean,
       s.weight * g.n / sum(g.n) OVER (PARTITION BY g.campaign_id, g.stratum, g.by) AS w,
       pvf_wilson_lo(g.mean, g.n) AS wilson_lo, pvf_wilson_hi(g.mean, g.n) AS wilson_hi,
       coalesce(e.stopped, false) AS stopped
FROM g
JOIN strata s ON s.campaign_id = g.campaign_id AND s.stratum = g.stratum
LEFT JOIN estimates e ON e.campaign_id = g.campaign_id AND e.stratum = g.stratum;

-- Per tensor: tensor strata are the stratum itself, tensor-bit strata combine
-- as sum(w x) / sum(w); for component strata, from the trial rows.
CREATE VIEW pvf_tensor_estimate AS
SELECT se.campaign_id, se.tensor, count(*) AS strata,
       sum(se.trials_used)::bigint AS trials_used,
       CASE WHEN count(se.estimate) = count(*)
            THEN sum(se.weight * se.estimate) / nullif(sum(se.weight), 0) END AS estimate,
       sum(se.weight * coalesce(se.lo, 0)) / nullif(sum(se.weight), 0) AS lo,
       sum(se.weight * coalesce(se.hi, 1)) / nullif(sum(se.weight), 0) AS hi,
       bool_and(se.stopped) AS stopped, bool_and(se.converged) AS converged,
       'cs'::text AS interval_kind
FROM pvf_stratum_estimate se
JOIN campaigns c ON c.id = se.campaign_id
WHERE c.strata_kind IN ('tensor', 'tensor-bit') AND se.tensor IS NOT NULL
GROUP BY se.campaign_id, se.tensor
UNION ALL
SELECT tg.campaign_id, tg.key, count(*), sum(tg.n)::bigint,
       sum(tg.w * tg.mean) / nullif(sum(tg.w), 0),
       sum(tg.w * tg.wilson_lo) / nullif(sum(tg.w), 0),
       sum(tg.w * tg.wilson_hi) / nullif(sum(tg.w), 0),
       bool_and(tg.stopped), false, 'wilson-trials'
FROM pvf_trial_groups tg
JOIN campaigns c ON c.id = tg.campaign_id
WHERE c.strata_kind IN ('component', 'component-bit') AND tg.by = 'tensor'
GROUP BY tg.campaign_id, tg.key;

-- Per component: the strata of the component combined as sum(w x) / sum(w)
-- (tensor strata carry their tensor's component, so every kind combines).
CREATE VIEW pvf_component_estimate AS
SELECT se.campaign_id, se.component, count(*) AS strata,
       sum(se.trials_used)::bigint AS trials_used,
       CASE WHEN count(se.estimate) = count(*)
            THEN sum(se.weight * se.estimate) / nullif(sum(se.weight), 0) END AS estimate,
       sum(se.weight * coalesce(se.lo, 0)) / nullif(sum(se.weight), 0) AS lo,
       sum(se.weight * coalesce(se.hi, 1)) / nullif(sum(se.weight), 0) AS hi,
       bool_and(se.stopped) AS stopped, bool_and(se.converged) AS converged,
       'cs'::text AS interval_kind
FROM pvf_stratum_estimate se
WHERE se.component IS NOT NULL
GROUP BY se.campaign_id, se.component;

-- Per bit position: *-bit strata combine as sum(w x) / sum(w); other kinds
-- from the trial rows (bit = the lowest bit of the fault's mask).
CREATE VIEW pvf_bit_estimate AS
SELECT se.campaign_id, se.bit, count(*) AS strata,
       sum(se.trials_used)::bigint AS trials_used,
       CASE WHEN count(se.estimate) = count(*)
            THEN sum(se.weight * se.estimate) / nullif(sum(se.weight), 0) END AS estimate,
       sum(se.weight * coalesce(se.lo, 0)) / nullif(sum(se.weight), 0) AS lo,
       sum(se.weight * coalesce(se.hi, 1)) / nullif(sum(se.weight), 0) AS hi,
       bool_and(se.stopped) AS stopped, bool_and(se.converged) AS converged,
       'cs'::text AS interval_kind
FROM pvf_stratum_estimate se
JOIN campaigns c ON c.id = se.campaign_id
WHERE c.strata_kind IN ('tensor-bit', 'component-bit') AND se.bit IS NOT NULL
GROUP BY se.campaign_id, se.bit
UNION ALL
SELECT tg.campaign_id, tg.bit, count(*), sum(tg.n)::bigint,
       sum(tg.w * tg.mean) / nullif(sum(tg.w), 0),
       sum(tg.w * tg.wilson_lo) / nullif(sum(tg.w), 0),
       sum(tg.w * tg.wilson_hi) / nullif(sum(tg.w), 0),
       bool_and(tg.stopped), false, 'wilson-trials'
FROM pvf_trial_groups tg
JOIN campaigns c ON c.id = tg.campaign_id
WHERE c.strata_kind IN ('tensor', 'component') AND tg.by = 'bit'
GROUP BY tg.campaign_id, tg.bit;

-- Per campaign: progress and the model-level PVF = sum over strata of
-- w_h * estimate_h (w = population share), interval [sum w lo, sum w hi]
-- (a stratum without an estimate yet counts as [0, 1]).
CREATE VIEW pvf_campaign_progress AS
SELECT c.id AS campaign_id, c.state,
       count(se.stratum) AS strata,
       count(se.stratum) FILTER (WHERE se.stopped) AS strata_stopped,
       coalesce(sum(se.trials_done), 0)::bigint AS trials_done,
       coalesce(sum(se.trials_used), 0)::bigint AS trials_used,
       CASE WHEN count(se.stratum) > 0 AND count(se.estimate) = count(se.stratum)
            THEN sum(se.weight * se.estimate) END AS estimate,
       sum(se.weight * coalesce(se.lo, 0)) AS lo,
       sum(se.weight * coalesce(se.hi, 1)) AS hi,
       coalesce(bool_and(se.stopped), false) AS stopped,
       coalesce(bool_and(se.converged), false) AS converged,
       c.created_at AS started, c.finished_at AS finished,
       coalesce(c.finished_at, now()) - c.created_at AS elapsed
FROM campaigns c
LEFT JOIN pvf_stratum_estimate se ON se.campaign_id = c.id
GROUP BY c.id;
