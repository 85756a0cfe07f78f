-- What a person fills in for an incident's personal-data breach
-- notification (the CNIL form's fields Vigie cannot know), one row per
-- field; every save is also in the audit log.
CREATE TABLE incident_notes (
  org_id TEXT NOT NULL, incident_id TEXT NOT NULL, field TEXT NOT NULL, value TEXT NOT NULL,
  updated_by TEXT NOT NULL, updated_at BIGINT NOT NULL,
  PRIMARY KEY (org_id, incident_id, field));
