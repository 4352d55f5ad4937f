-- Identity's own tables (schema "identity"). Forward-only: never edit, add 0002_… instead.

CREATE TABLE organisations (
    id              uuid PRIMARY KEY,
    finess          text UNIQUE CHECK (finess ~ '^([0-9]{9}|2[AB][0-9]{7})$'),
    name            text NOT NULL CHECK (name <> ''),
    kind            text NOT NULL CHECK (kind IN ('hospital', 'laboratory', 'imaging_centre', 'practice', 'pharmacy',
                                                 'medico_social', 'insurer', 'app_publisher', 'other')),
    address         jsonb,
    department_code text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Persons (holders). "nir" holds the 13-character NIR or NIA (ins_type says which);
-- the INS is nir || ins_key.
CREATE TABLE persons (
    id                    uuid PRIMARY KEY,
    ins_type              text NOT NULL DEFAULT 'nir' CHECK (ins_type IN ('nir', 'nia')),
    nir                   char(13) NOT NULL UNIQUE CHECK (nir ~ '^[1-8][0-9]{4}([0-9]{2}|2[AB])[0-9]{6}$'),
    ins_key               char(2) NOT NULL CHECK (ins_key ~ '^[0-9]{2}$'),
    birth_name            text NOT NULL CHECK (birth_name <> ''),
    used_name             text NOT NULL DEFAULT '',
    first_names           text[] NOT NULL,
    used_first_name       text NOT NULL DEFAULT '',
    sex                   char(1) NOT NULL CHECK (sex IN ('F', 'M', 'I')),
    -- A partial birth date (some persons born abroad) is stored as its first day with a precision.
    birth_date            date NOT NULL,
    birth_date_precision  text NOT NULL DEFAULT 'day' CHECK (birth_date_precision IN ('day', 'month', 'year')),
    birth_place_code      text NOT NULL DEFAULT '',
    email                 text NOT NULL DEFAULT '' CHECK (email = lower(email)),
    mobile_phone          text NOT NULL DEFAULT '',
    postal_address        jsonb,
    department_code       text NOT NULL DEFAULT '',
    state                 text NOT NULL CHECK (state IN ('notified', 'active', 'opposed', 'created_by_default',
                                                         'suspended', 'closed', 'deleted')),
    state_reason          text NOT NULL DEFAULT '',
    opposition_deadline   timestamptz,
    notice_channel        text NOT NULL DEFAULT 'email' CHECK (notice_channel IN ('email', 'letter')),
    one_time_code_channel text NOT NULL DEFAULT 'email' CHECK (one_time_code_channel IN ('email', 'sms')),
    password_hash         text,
    password_updated_at   timestamptz,
    activated_at          timestamptz,
    closed_at             timestamptz,
    scheduled_delete_at   timestamptz,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now()
);
-- An e-mail may be the contact point of several persons (a parent's address on a
-- child's record) but the login of one account only.
CREATE INDEX persons_email ON persons (email) WHERE email <> '';
CREATE UNIQUE INDEX persons_login_email ON persons (email) WHERE email <> '' AND password_hash IS NOT NULL;
CREATE INDEX persons_state_deadline ON persons (state, opposition_deadline);
CREATE INDEX persons_department ON persons (department_code);

CREATE TABLE professionals (
    id                    uuid PRIMARY KEY,
    rpps                  char(11) NOT NULL UNIQUE CHECK (rpps ~ '^[0-9]{11}$'),
    birth_name            text NOT NULL CHECK (birth_name <> ''),
    used_name             text NOT NULL DEFAULT '',
    first_names           text[] NOT NULL,
    used_first_name       text NOT NULL DEFAULT '',
    profession_code       text NOT NULL CHECK (profession_code ~ '^[0-9]{2}$'),
    specialty_code        text NOT NULL DEFAULT '',
    email                 text NOT NULL DEFAULT '' CHECK (email = lower(email)),
    mobile_phone          text NOT NULL DEFAULT '',
    one_time_code_channel text NOT NULL DEFAULT 'email' CHECK (one_time_code_channel IN ('email', 'sms')),
    disabled              boolean NOT NULL DEFAULT false,
    password_hash         text,
    password_updated_at   timestamptz,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX professionals_login_email ON professionals (email) WHERE email <> '';
CREATE INDEX professionals_profession ON professionals (profession_code);

-- Where a professional practises; rank 0 is the default organisation in tokens.
CREATE TABLE professional_organisations (
    professional_id uuid NOT NULL REFERENCES professionals (id) ON DELETE CASCADE,
    organisation_id uuid NOT NULL REFERENCES organisations (id),
    rank            integer NOT NULL DEFAULT 0,
    PRIMARY KEY (professional_id, organisation_id)
);
CREATE INDEX professional_organisations_organisation ON professional_organisations (organisation_id);

CREATE TABLE software_clients (
    client_id         text PRIMARY KEY CHECK (client_id ~ '^[a-z0-9][a-z0-9._-]{1,62}$'),
    display_name      text NOT NULL,
    kind              text NOT NULL CHECK (kind IN ('pacs', 'practice_software', 'hospital_system', 'laboratory_system',
                                                   'catalogue_app', 'insurer_registry')),
    organisation_id   uuid REFERENCES organisations (id),
    scopes            text[] NOT NULL DEFAULT '{}',
    disabled          boolean NOT NULL DEFAULT false,
    secret_hash       text NOT NULL,
    secret_updated_at timestamptz NOT NULL DEFAULT now(),
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX software_clients_organisation ON software_clients (organisation_id);

-- A DICOM AE title belongs to one client (imaging matches incoming associations with it).
CREATE TABLE client_ae_titles (
    ae_title  text PRIMARY KEY CHECK (ae_title ~ '^[ -~]{1,16}$' AND ae_title = btrim(ae_title)),
    client_id text NOT NULL REFERENCES software_clients (client_id) ON DELETE CASCADE
);
CREATE INDEX client_ae_titles_client ON client_ae_titles (client_id);

-- Legal representatives of minors (kind 'legal', until the 18th birthday) and helpers
-- nominated by the holder (kind 'helper', read-only or full access).
CREATE TABLE representatives (
    id                uuid PRIMARY KEY,
    kind              text NOT NULL CHECK (kind IN ('legal', 'helper')),
    holder_id         uuid NOT NULL REFERENCES persons (id),
    representative_id uuid NOT NULL REFERENCES persons (id),
    relationship      text NOT NULL DEFAULT '' CHECK (relationship IN ('', 'parent', 'guardian')),
    access            text NOT NULL CHECK (access IN ('read_only', 'full')),
    valid_from        timestamptz NOT NULL DEFAULT now(),
    valid_until       timestamptz,
    created_by        jsonb,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    ended_at          timestamptz,
    CHECK (holder_id <> representative_id),
    CHECK (kind = 'helper' OR (relationship <> '' AND access = 'full'))
);
CREATE UNIQUE INDEX representatives_current ON representatives (kind, holder_id, representative_id) WHERE ended_at IS NULL;
CREATE INDEX representatives_representative ON representatives (representative_id);

CREATE TABLE treating_physicians (
    holder_id       uuid PRIMARY KEY REFERENCES persons (id),
    professional_id uuid NOT NULL REFERENCES professionals (id),
    declared_by     jsonb,
    declared_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX treating_physicians_professional ON treating_physicians (professional_id);

-- Temporary activation codes (argon2id-hashed), one outstanding per person.
CREATE TABLE activation_codes (
    id           uuid PRIMARY KEY,
    person_id    uuid NOT NULL REFERENCES persons (id),
    code_hash    text NOT NULL,
    channel      text NOT NULL CHECK (channel IN ('email', 'letter')),
    attempts     integer NOT NULL DEFAULT 0,
    max_attempts integer NOT NULL DEFAULT 5,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    used_at      timestamptz,
    revoked_at   timestamptz
);
CREATE UNIQUE INDEX activation_codes_outstanding ON activation_codes (person_id) WHERE used_at IS NULL AND revoked_at IS NULL;

-- Second login step: a 6-digit one-time code (argon2id-hashed), 10 minutes, 5 tries.
CREATE TABLE login_challenges (
    id                 uuid PRIMARY KEY,
    account_kind       text NOT NULL CHECK (account_kind IN ('person', 'professional')),
    account_id         uuid NOT NULL,
    code_hash          text NOT NULL,
    channel            text NOT NULL CHECK (channel IN ('email', 'sms')),
    masked_destination text NOT NULL,
    state              text NOT NULL CHECK (state IN ('pending', 'completed', 'locked', 'undeliverable')),
    attempts           integer NOT NULL DEFAULT 0,
    max_attempts       integer NOT NULL DEFAULT 5,
    created_at         timestamptz NOT NULL DEFAULT now(),
    expires_at         timestamptz NOT NULL,
    completed_at       timestamptz
);
CREATE INDEX login_challenges_account ON login_challenges (account_kind, account_id, created_at);
CREATE INDEX login_challenges_expiry ON login_challenges (expires_at);

-- Rotating refresh tokens (SHA-256 digests). A family is one login; presenting a
-- rotated token again revokes the whole family.
CREATE TABLE refresh_tokens (
    id                uuid PRIMARY KEY,
    token_digest      bytea NOT NULL UNIQUE,
    family_id         uuid NOT NULL,
    account_kind      text NOT NULL CHECK (account_kind IN ('person', 'professional')),
    account_id        uuid NOT NULL,
    acting_for        uuid,
    organisation_id   uuid,
    issued_at         timestamptz NOT NULL DEFAULT now(),
    expires_at        timestamptz NOT NULL,
    rotated_at        timestamptz,
    replaced_by       uuid,
    revoked_at        timestamptz,
    revoke_reason     text,
    -- The access token issued with this refresh token, revoked with the family.
    access_token_id   text NOT NULL,
    access_expires_at timestamptz NOT NULL
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_account ON refresh_tokens (account_kind, account_id);
CREATE INDEX refresh_tokens_expiry ON refresh_tokens (expires_at);

-- Ed25519 keys signing access tokens. The private key is stored as PKCS#8 PEM for now;
-- encryption at rest under a key-encryption key is part of issue 3.
CREATE TABLE signing_keys (
    kid             text PRIMARY KEY,
    algorithm       text NOT NULL,
    curve           text NOT NULL,
    public_jwk      jsonb NOT NULL,
    private_key_pem text NOT NULL,
    state           text NOT NULL CHECK (state IN ('pending', 'active', 'retiring', 'retired')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    activated_at    timestamptz,
    retire_at       timestamptz
);
-- At most one key signs at a time.
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys ((true)) WHERE state = 'active';
