-- Persons' lifecycle, bulk enrolment and activation notices (issue 3).

-- The state a space had before it was suspended or closed (reopening restores it),
-- how long a closed space's archive is kept, and when a deletion was asked for.
ALTER TABLE persons
    ADD COLUMN previous_state         text CHECK (previous_state IN ('notified', 'active', 'created_by_default')),
    ADD COLUMN archive_until          timestamptz,
    ADD COLUMN deletion_requested_at  timestamptz;
-- The jobs look for suspended spaces to close and closed spaces to delete.
CREATE INDEX persons_state_closed ON persons (state, closed_at) WHERE state = 'suspended';
CREATE INDEX persons_state_delete ON persons (state, scheduled_delete_at) WHERE state = 'closed';

-- Which import run enrolled or last changed a person (support questions).
CREATE TABLE person_imports (
    id            uuid PRIMARY KEY,
    file_name     text NOT NULL DEFAULT '',
    dry_run       boolean NOT NULL DEFAULT false,
    started_by    text NOT NULL DEFAULT '',
    started_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    row_count     bigint NOT NULL DEFAULT 0,
    created_count bigint NOT NULL DEFAULT 0,
    updated_count bigint NOT NULL DEFAULT 0,
    unchanged_count bigint NOT NULL DEFAULT 0,
    rejected_count bigint NOT NULL DEFAULT 0
);

-- Idempotency of CreatePerson: a retry with the same request id returns the first person.
CREATE TABLE person_create_requests (
    request_id text PRIMARY KEY,
    person_id  uuid NOT NULL REFERENCES persons (id),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Activation notices waiting to go through notify (durable, retried by the notice
-- worker). The plain code is kept only until notify has accepted the notice.
CREATE TABLE activation_notices (
    code_id         uuid PRIMARY KEY REFERENCES activation_codes (id),
    person_id       uuid NOT NULL REFERENCES persons (id),
    channel         text NOT NULL CHECK (channel IN ('email', 'letter')),
    email           text NOT NULL DEFAULT '',
    code            text,
    state           text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'failed', 'cancelled')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz
);
CREATE INDEX activation_notices_due ON activation_notices (next_attempt_at) WHERE state = 'pending';
CREATE INDEX activation_notices_person ON activation_notices (person_id);

-- Single-use tokens authorising SetPassword right after activation (SHA-256 digests).
CREATE TABLE password_setup_tokens (
    token_digest bytea PRIMARY KEY,
    person_id    uuid NOT NULL REFERENCES persons (id),
    expires_at   timestamptz NOT NULL,
    used_at      timestamptz
);
CREATE INDEX password_setup_tokens_person ON password_setup_tokens (person_id);
