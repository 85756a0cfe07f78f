-- Notification outbox: one row per (alert, channel), written in the same
-- transaction as the alert. A notification therefore survives a manager
-- restart, and with several managers on one database exactly one of them
-- claims and sends it (claimed_until is the lease).
CREATE TABLE notify_outbox (
  id TEXT PRIMARY KEY, org_id TEXT NOT NULL, alert_id TEXT NOT NULL, channel TEXT NOT NULL,
  created_at BIGINT NOT NULL, next_try BIGINT NOT NULL,
  attempts BIGINT NOT NULL DEFAULT 0, claimed_until BIGINT NOT NULL DEFAULT 0,
  state TEXT NOT NULL DEFAULT 'pending', last_error TEXT);
CREATE INDEX notify_outbox_due ON notify_outbox(state, next_try);
