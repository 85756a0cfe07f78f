-- Vigie manager tables (the same DDL for SQLite and PostgreSQL; times are
-- milliseconds since the Unix epoch, booleans 0/1). Every row has org_id.
CREATE TABLE orgs (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, created_at BIGINT NOT NULL);

CREATE TABLE enroll_tokens (
  id TEXT PRIMARY KEY, org_id TEXT NOT NULL REFERENCES orgs(id), secret_hash TEXT NOT NULL UNIQUE,
  created_at BIGINT NOT NULL, expires_at BIGINT NOT NULL,
  used_at BIGINT, used_by TEXT, revoked_at BIGINT);

CREATE TABLE hosts (
  id TEXT PRIMARY KEY, org_id TEXT NOT NULL REFERENCES orgs(id), hostname TEXT NOT NULL,
  os TEXT NOT NULL DEFAULT '', kernel TEXT NOT NULL DEFAULT '', agent_version TEXT NOT NULL DEFAULT '',
  addresses TEXT NOT NULL DEFAULT '[]', sensor_health TEXT NOT NULL DEFAULT '',
  sensor_lost BIGINT NOT NULL DEFAULT 0, spool_dropped BIGINT NOT NULL DEFAULT 0,
  spool_pending BIGINT NOT NULL DEFAULT 0, isolated BIGINT NOT NULL DEFAULT 0,
  group_name TEXT NOT NULL DEFAULT 'default',
  enrolled_at BIGINT NOT NULL, last_seen BIGINT NOT NULL DEFAULT 0,
  cert_fingerprint TEXT NOT NULL UNIQUE, cert_not_after BIGINT NOT NULL, revoked_at BIGINT);
CREATE INDEX hosts_org ON hosts(org_id, hostname);

CREATE TABLE events (
  org_id TEXT NOT NULL, id TEXT NOT NULL, host_id TEXT NOT NULL, time BIGINT NOT NULL,
  dataset TEXT NOT NULL, action TEXT NOT NULL, process_name TEXT, process_pid BIGINT,
  user_name TEXT, doc TEXT NOT NULL,
  PRIMARY KEY (org_id, id));
CREATE INDEX events_host_time ON events(org_id, host_id, time);
CREATE INDEX events_time ON events(org_id, time);
CREATE INDEX events_process ON events(org_id, process_name, time);
CREATE INDEX events_user ON events(org_id, user_name, time);

CREATE TABLE alerts (
  org_id TEXT NOT NULL, id TEXT NOT NULL, host_id TEXT NOT NULL, time BIGINT NOT NULL,
  rule_id TEXT NOT NULL, rule_name TEXT NOT NULL, level TEXT NOT NULL, severity BIGINT NOT NULL,
  status TEXT NOT NULL DEFAULT 'new', assignee TEXT, verdict TEXT, incident_id TEXT,
  doc TEXT NOT NULL,
  PRIMARY KEY (org_id, id));
CREATE INDEX alerts_time ON alerts(org_id, time);
CREATE INDEX alerts_host ON alerts(org_id, host_id, time);
CREATE INDEX alerts_rule ON alerts(org_id, rule_id, time);

CREATE TABLE alert_comments (
  id TEXT PRIMARY KEY, org_id TEXT NOT NULL, alert_id TEXT NOT NULL, author TEXT NOT NULL,
  time BIGINT NOT NULL, body TEXT NOT NULL);

CREATE TABLE incidents (
  id TEXT PRIMARY KEY, org_id TEXT NOT NULL, host_id TEXT NOT NULL, title TEXT NOT NULL,
  status TEXT NOT NULL DEFAULT 'open', first_time BIGINT NOT NULL, last_time BIGINT NOT NULL,
  alert_count BIGINT NOT NULL DEFAULT 0);
CREATE INDEX incidents_host ON incidents(org_id, host_id, last_time);

CREATE TABLE commands (
  id TEXT PRIMARY KEY, org_id TEXT NOT NULL, host_id TEXT NOT NULL, kind TEXT NOT NULL,
  actor TEXT NOT NULL, reason TEXT NOT NULL, args TEXT NOT NULL DEFAULT '{}',
  created_at BIGINT NOT NULL, sent_at BIGINT, finished_at BIGINT,
  status TEXT NOT NULL DEFAULT 'pending', outcome TEXT, error TEXT);
CREATE INDEX commands_host ON commands(host_id, status);

CREATE TABLE audit (
  id TEXT PRIMARY KEY, org_id TEXT NOT NULL, time BIGINT NOT NULL, actor TEXT NOT NULL,
  action TEXT NOT NULL, target TEXT NOT NULL, reason TEXT NOT NULL, outcome TEXT NOT NULL,
  details TEXT NOT NULL DEFAULT '{}');
CREATE INDEX audit_time ON audit(org_id, time);

CREATE TABLE users (
  id TEXT PRIMARY KEY, org_id TEXT NOT NULL REFERENCES orgs(id), username TEXT NOT NULL UNIQUE,
  password_hash TEXT NOT NULL, role TEXT NOT NULL, created_at BIGINT NOT NULL,
  must_change BIGINT NOT NULL DEFAULT 0, disabled_at BIGINT);

CREATE TABLE api_tokens (
  id TEXT PRIMARY KEY, org_id TEXT NOT NULL REFERENCES orgs(id), user_id TEXT, name TEXT NOT NULL,
  token_hash TEXT NOT NULL UNIQUE, role TEXT NOT NULL, created_at BIGINT NOT NULL,
  expires_at BIGINT, revoked_at BIGINT);

-- The audit log is append-only, enforced by the database too.
CREATE FUNCTION vigie_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'the audit log is append-only'; END; $$;
CREATE TRIGGER audit_no_change BEFORE UPDATE OR DELETE ON audit
FOR EACH ROW EXECUTE FUNCTION vigie_audit_append_only();
