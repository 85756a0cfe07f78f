-- The host's release secret (hex), sent by the agent at enrolment: the
-- manager derives offline release codes from it. NULL for agents enrolled
-- before, which must re-enrol to get codes from the manager.
ALTER TABLE hosts ADD COLUMN release_secret TEXT;
