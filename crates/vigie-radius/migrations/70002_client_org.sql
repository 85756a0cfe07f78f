-- The organisation (tenant) a NAS client's logins belong to in the manager;
-- NULL: the manager's default organisation.
ALTER TABLE mfa_clients ADD COLUMN org TEXT;
