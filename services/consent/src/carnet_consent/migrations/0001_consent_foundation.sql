-- The holder's choices that access decisions depend on. Applied in schema "consent".

-- Oppositions (creation of the space, break-glass, emergency regulation, research),
-- each with a receipt. A withdrawn opposition is kept with its withdrawal receipt.
CREATE TABLE oppositions (
    opposition_id             uuid        PRIMARY KEY,
    holder_id                 text        NOT NULL,
    kind                      text        NOT NULL
        CHECK (kind IN ('CREATION', 'BREAK_GLASS', 'EMERGENCY_REGULATION', 'RESEARCH')),
    channel                   text        NOT NULL
        CHECK (channel IN ('ONLINE', 'AGENT', 'LETTER')),
    receipt_number            text        NOT NULL UNIQUE,
    recorded_by               jsonb       NOT NULL,
    create_time               timestamptz NOT NULL DEFAULT now(),
    request_id                text        UNIQUE,
    withdrawal_receipt_number text        UNIQUE,
    withdrawn_by              jsonb,
    withdraw_time             timestamptz,
    CHECK ((withdraw_time IS NULL) = (withdrawal_receipt_number IS NULL))
);
-- At most one opposition of each kind in force per holder.
CREATE UNIQUE INDEX oppositions_one_active ON oppositions (holder_id, kind) WHERE withdraw_time IS NULL;
CREATE INDEX oppositions_by_holder ON oppositions (holder_id, create_time DESC, opposition_id DESC);

-- Professionals a holder blocked: nothing gets through to them, even with consent.
-- Unblocking deletes the row (the change is kept in the holder's access log).
CREATE TABLE blocks (
    block_id        uuid        PRIMARY KEY,
    holder_id       text        NOT NULL,
    professional_id text        NOT NULL,
    rpps            text        NOT NULL DEFAULT '',
    created_by      jsonb       NOT NULL,
    create_time     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (holder_id, professional_id)
);
CREATE INDEX blocks_by_rpps ON blocks (holder_id, rpps) WHERE rpps <> '';

-- Care-team authorisations: granted by the holder, declared by a professional in a
-- care relationship (holder informed), or a one-consultation consent. A revoked one
-- is kept, marked revoked.
CREATE TABLE care_team_authorisations (
    authorisation_id uuid        PRIMARY KEY,
    holder_id        text        NOT NULL,
    professional_id  text        NOT NULL DEFAULT '',
    rpps             text        NOT NULL DEFAULT '',
    organisation_id  text        NOT NULL DEFAULT '',
    origin           text        NOT NULL
        CHECK (origin IN ('HOLDER_GRANT', 'PROFESSIONAL_DECLARATION', 'CONSULTATION_CONSENT')),
    created_by       jsonb       NOT NULL,
    create_time      timestamptz NOT NULL DEFAULT now(),
    expire_time      timestamptz,
    request_id       text        UNIQUE,
    revoked_by       jsonb,
    revoke_time      timestamptz,
    CHECK (professional_id <> '' OR organisation_id <> '')
);
CREATE INDEX care_team_by_holder ON care_team_authorisations (holder_id, create_time DESC, authorisation_id DESC);
CREATE INDEX care_team_by_professional ON care_team_authorisations (professional_id, holder_id)
    WHERE professional_id <> '';
