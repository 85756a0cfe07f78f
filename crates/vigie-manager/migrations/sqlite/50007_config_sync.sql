-- Rules and policies pushed to agents: a command may carry content (the
-- rule bundle, the policy JSON), and each host remembers the versions last
-- sent to it, so the manager sends each change once.
ALTER TABLE commands ADD COLUMN blob TEXT;
ALTER TABLE hosts ADD COLUMN rules_sent TEXT;
ALTER TABLE hosts ADD COLUMN policy_sent TEXT;
