-- how the profile's agents see names: 'namespaced' (<alias>__<tool>) or 'bare' (the upstream's
-- own name while it is unambiguous within the profile)
ALTER TABLE profiles ADD COLUMN tool_names text NOT NULL DEFAULT 'namespaced'
    CHECK (tool_names IN ('namespaced', 'bare'));
