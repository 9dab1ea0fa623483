-- 003_campaign_error.sql - why a campaign was given up (its jobs kept failing
-- on the workers, e.g. a model they cannot load), for pvf campaign show.
ALTER TABLE campaigns ADD COLUMN error text;
COMMENT ON COLUMN campaigns.error IS 'the last job error when the coordinator gave the campaign up';
