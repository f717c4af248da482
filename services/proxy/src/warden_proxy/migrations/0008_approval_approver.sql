-- Who may decide a held call (admin | user | any, from the tool's registry setting) and what
-- kind of decider did (admin, user, agent, system): with decided_by, the identity that decided.
ALTER TABLE approvals ADD COLUMN approver text NOT NULL DEFAULT 'admin';
ALTER TABLE approvals ADD COLUMN decided_by_kind text;
