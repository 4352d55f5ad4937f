-- The medical profile: one row per entry (its current state; deleted entries stay as
-- tombstones), and every state it went through in profile_entry_revisions, written in
-- the same transaction as the change.
CREATE TABLE profile_entries (
    entry_id                  uuid        PRIMARY KEY,
    holder_id                 uuid        NOT NULL,
    kind                      text        NOT NULL,
    measurement_type          text        NOT NULL DEFAULT '',
    value                     jsonb       NOT NULL,
    source                    text        NOT NULL CHECK (source IN ('HOLDER', 'PROFESSIONAL', 'APP', 'DERIVED')),
    created_by                jsonb       NOT NULL,
    author_rpps               text        NOT NULL DEFAULT '',
    recorded_by               jsonb       NOT NULL,
    version                   integer     NOT NULL CHECK (version >= 1),
    hidden_from_professionals boolean     NOT NULL DEFAULT false,
    -- When it was measured (measurements) or created (anything else): what lists sort and filter on.
    effective_time            timestamptz NOT NULL,
    -- Idempotency of CreateProfileEntry: the caller, their request id, a digest of what they asked.
    requester                 text,
    request_id                text,
    request_digest            text,
    created_at                timestamptz NOT NULL,
    updated_at                timestamptz,
    deleted_at                timestamptz,
    UNIQUE (requester, request_id)
);
CREATE INDEX profile_entries_by_holder
    ON profile_entries (holder_id, effective_time DESC, entry_id DESC) WHERE deleted_at IS NULL;
CREATE INDEX profile_latest_measurements
    ON profile_entries (holder_id, measurement_type, effective_time DESC)
    WHERE deleted_at IS NULL AND kind = 'MEASUREMENT';
-- A holder has one blood group, one organ donation wish and one set of advance directives.
CREATE UNIQUE INDEX profile_one_per_holder
    ON profile_entries (holder_id, kind)
    WHERE deleted_at IS NULL AND kind IN ('BLOOD_GROUP', 'ORGAN_DONATION', 'ADVANCE_DIRECTIVES');
-- One trusted person (personne de confiance) among the people to contact.
CREATE UNIQUE INDEX profile_one_trusted_person
    ON profile_entries (holder_id)
    WHERE deleted_at IS NULL AND kind = 'CONTACT_PERSON' AND value @> '{"trusted_person": true}';
-- And one derived BMI.
CREATE UNIQUE INDEX profile_one_derived_bmi
    ON profile_entries (holder_id) WHERE deleted_at IS NULL AND source = 'DERIVED';

CREATE TABLE profile_entry_revisions (
    entry_id     uuid        NOT NULL REFERENCES profile_entries (entry_id) ON DELETE CASCADE,
    version      integer     NOT NULL,
    holder_id    uuid        NOT NULL,
    change_type  text        NOT NULL CHECK (change_type IN ('CREATED', 'UPDATED', 'DELETED')),
    entry        jsonb       NOT NULL,
    changed_by   jsonb       NOT NULL,
    changed_at   timestamptz NOT NULL,
    PRIMARY KEY (entry_id, version)
);
CREATE INDEX profile_entry_revisions_by_holder ON profile_entry_revisions (holder_id);
