-- The web console: sessions (only the SHA-256 of the session id is kept),
-- console lockout and admin TOTP on users, uploaded rules, settings, and
-- indexes for the console's pages.
CREATE TABLE console_sessions (
  id_hash TEXT PRIMARY KEY, user_id TEXT, org_id TEXT, username TEXT, role TEXT,
  stage TEXT NOT NULL, csrf TEXT NOT NULL, pending_totp TEXT,
  created_at BIGINT NOT NULL, expires_at BIGINT NOT NULL);
CREATE INDEX console_sessions_expiry ON console_sessions(expires_at);
ALTER TABLE users ADD COLUMN failed_logins BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN locked_until BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN totp_secret TEXT;
ALTER TABLE users ADD COLUMN totp_last_step BIGINT NOT NULL DEFAULT 0;
CREATE TABLE console_rules (
  id TEXT PRIMARY KEY, org_id TEXT NOT NULL, title TEXT NOT NULL, source TEXT NOT NULL,
  enabled BIGINT NOT NULL DEFAULT 1, uploaded_by TEXT NOT NULL, uploaded_at BIGINT NOT NULL);
CREATE TABLE console_settings (
  org_id TEXT NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (org_id, name));
CREATE INDEX alerts_time_level ON alerts(org_id, time, level);
CREATE INDEX alerts_status_time ON alerts(org_id, status, time);
