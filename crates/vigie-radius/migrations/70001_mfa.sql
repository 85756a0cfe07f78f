-- Vigie MFA tables. Portable SQL (SQLite and PostgreSQL): TEXT and BIGINT only,
-- times are Unix seconds, booleans are 0/1.
CREATE TABLE IF NOT EXISTS mfa_users (
    name          TEXT PRIMARY KEY,
    backend       TEXT NOT NULL,
    password_hash TEXT,
    disabled      BIGINT NOT NULL DEFAULT 0,
    totp_secret   TEXT,
    totp_algorithm TEXT NOT NULL DEFAULT 'SHA1',
    totp_digits   BIGINT NOT NULL DEFAULT 6,
    last_step     BIGINT NOT NULL DEFAULT 0,
    drift         BIGINT NOT NULL DEFAULT 0,
    failures      BIGINT NOT NULL DEFAULT 0,
    last_failure  BIGINT NOT NULL DEFAULT 0,
    locked_until  BIGINT NOT NULL DEFAULT 0,
    created       BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS mfa_clients (
    name           TEXT PRIMARY KEY,
    address        TEXT NOT NULL,
    secret         TEXT NOT NULL,
    code_transport TEXT NOT NULL DEFAULT 'append',
    require_message_authenticator BIGINT NOT NULL DEFAULT 1,
    created        BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS mfa_sessions (
    nas           TEXT NOT NULL,
    session_id    TEXT NOT NULL,
    user_name     TEXT NOT NULL,
    client_ip     TEXT,
    tunnel_ip     TEXT,
    started       BIGINT NOT NULL,
    updated       BIGINT NOT NULL,
    stopped       BIGINT,
    duration      BIGINT NOT NULL DEFAULT 0,
    input_octets  BIGINT NOT NULL DEFAULT 0,
    output_octets BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (nas, session_id)
);

CREATE TABLE IF NOT EXISTS mfa_audit (
    id     TEXT PRIMARY KEY,
    time   BIGINT NOT NULL,
    actor  TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL
);
