-- Uploaded rules can be assigned to host groups: comma-separated group
-- names; empty means every group of the organisation.
ALTER TABLE console_rules ADD COLUMN groups TEXT NOT NULL DEFAULT '';
