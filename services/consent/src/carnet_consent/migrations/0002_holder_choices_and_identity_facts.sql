-- Issue 3: app consents, and the identity facts consent keeps locally so that a
-- decision never waits for identity. Applied in schema "consent".

-- The holder's prior, revocable consent to a catalogue app exchanging a data category.
CREATE TABLE app_consents (
    app_consent_id uuid        PRIMARY KEY,
    holder_id      text        NOT NULL,
    client_id      text        NOT NULL,
    data_category  text        NOT NULL,
    access         text        NOT NULL CHECK (access IN ('READ', 'WRITE', 'READ_WRITE')),
    created_by     jsonb       NOT NULL,
    create_time    timestamptz NOT NULL DEFAULT now(),
    revoked_by     jsonb,
    revoke_time    timestamptz
);
-- At most one consent in force per holder, app and category.
CREATE UNIQUE INDEX app_consents_one_active ON app_consents (holder_id, client_id, data_category)
    WHERE revoke_time IS NULL;
CREATE INDEX app_consents_by_holder ON app_consents (holder_id, create_time DESC, app_consent_id DESC);

-- Care-team authorisations are listed newest first per holder and per professional.
CREATE INDEX care_team_by_professional_time ON care_team_authorisations
    (professional_id, create_time DESC, authorisation_id DESC);

-- Identity facts, fed by identity's events (carnet:events:identity, consumer group
-- "consent-facts"). Each row remembers the time of the event that set it so that a
-- late, older event never overwrites a newer fact.

-- The lifecycle state of each holder's space and the end of the opposition window.
CREATE TABLE persons (
    holder_id           text        PRIMARY KEY,
    state               text        NOT NULL,
    opposition_deadline timestamptz,
    occur_time          timestamptz NOT NULL
);

-- The holder's treating physician (one at most); empty professional_id when withdrawn.
CREATE TABLE treating_physicians (
    holder_id       text        PRIMARY KEY,
    professional_id text        NOT NULL,
    occur_time      timestamptz NOT NULL
);

-- Legal representatives of minor holders.
CREATE TABLE representatives (
    holder_id         text        NOT NULL,
    representative_id text        NOT NULL,
    occur_time        timestamptz NOT NULL,
    PRIMARY KEY (holder_id, representative_id)
);

-- Helpers the holder nominated, with their access (READ_ONLY or FULL).
CREATE TABLE helpers (
    holder_id        text        NOT NULL,
    helper_person_id text        NOT NULL,
    access           text        NOT NULL CHECK (access IN ('READ_ONLY', 'FULL')),
    occur_time       timestamptz NOT NULL,
    PRIMARY KEY (holder_id, helper_person_id)
);
