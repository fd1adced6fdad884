-- Regions (issue 13): a host belongs to a region (an IDC or a site: a group
-- of zones) as well as a zone; NULL is the default region. A cluster lives
-- in one region; standby clusters in others.
-- Keep in step with ../mysql/0010_regions.sql.

ALTER TABLE hosts ADD COLUMN region TEXT;
