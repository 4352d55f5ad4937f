-- The AE registry in full: an id, whether the AE may be a C-MOVE destination, and the
-- PACS-local issuer of patient ids its studies may carry.
ALTER TABLE application_entities
    ADD COLUMN application_entity_id uuid NOT NULL DEFAULT gen_random_uuid(),
    ADD COLUMN move_destination boolean NOT NULL DEFAULT false,
    ADD COLUMN local_issuer_of_patient_id text NOT NULL DEFAULT '',
    ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();
CREATE UNIQUE INDEX application_entities_by_id ON application_entities (application_entity_id);

-- A PACS-local patient id known to be a holder (learnt when an operator assigns a
-- quarantined instance): later instances with the same client, issuer and id match it.
CREATE TABLE patient_id_mappings (
    client_id            text        NOT NULL,
    issuer_of_patient_id text        NOT NULL,
    patient_id           text        NOT NULL,
    holder_id            uuid        NOT NULL,
    created_by           text        NOT NULL,
    created_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (client_id, issuer_of_patient_id, patient_id)
);

-- STUDY level. Counts are kept by the ingest (one row per study, updated per instance).
CREATE TABLE studies (
    study_instance_uid       text        PRIMARY KEY,
    holder_id                uuid        NOT NULL,
    patient_id               text        NOT NULL DEFAULT '',
    issuer_of_patient_id     text        NOT NULL DEFAULT '',
    patient_name             text        NOT NULL DEFAULT '',
    patient_birth_date       text        NOT NULL DEFAULT '',
    patient_sex              text        NOT NULL DEFAULT '',
    study_date               text        NOT NULL DEFAULT '',
    study_time               text        NOT NULL DEFAULT '',
    accession_number         text        NOT NULL DEFAULT '',
    study_description        text        NOT NULL DEFAULT '',
    study_id                 text        NOT NULL DEFAULT '',
    referring_physician_name text        NOT NULL DEFAULT '',
    modalities_in_study      text[]      NOT NULL DEFAULT '{}',
    number_of_series         integer     NOT NULL DEFAULT 0,
    number_of_instances      integer     NOT NULL DEFAULT 0,
    size_bytes               bigint      NOT NULL DEFAULT 0,
    availability             text        NOT NULL DEFAULT 'ONLINE'
                                         CHECK (availability IN ('ONLINE', 'REMOTE', 'CACHED')),
    remote_source_id         uuid,
    state                    text        NOT NULL DEFAULT 'RECEIVING' CHECK (state IN ('RECEIVING', 'COMPLETE')),
    source_client_id         text        NOT NULL DEFAULT '',
    source_ae_title          text        NOT NULL DEFAULT '',
    organisation_id          text        NOT NULL DEFAULT '',
    dossier_document_id      text        NOT NULL DEFAULT '',
    report_document_id       text        NOT NULL DEFAULT '',
    created_at               timestamptz NOT NULL DEFAULT now(),
    updated_at               timestamptz NOT NULL DEFAULT now(),
    last_received_at         timestamptz NOT NULL DEFAULT now(),
    complete_at              timestamptz
);
CREATE INDEX studies_by_holder ON studies (holder_id, study_date DESC, study_instance_uid);
CREATE INDEX studies_by_patient ON studies (patient_id, issuer_of_patient_id);
CREATE INDEX studies_by_accession ON studies (accession_number) WHERE accession_number <> '';
-- The completion job's worklist: studies still receiving, oldest news first.
CREATE INDEX studies_receiving ON studies (last_received_at) WHERE state = 'RECEIVING';

-- SERIES level.
CREATE TABLE series (
    series_instance_uid text        PRIMARY KEY,
    study_instance_uid  text        NOT NULL REFERENCES studies ON DELETE CASCADE,
    modality            text        NOT NULL DEFAULT '',
    series_number       integer,
    series_description  text        NOT NULL DEFAULT '',
    body_part_examined  text        NOT NULL DEFAULT '',
    series_date         text        NOT NULL DEFAULT '',
    series_time         text        NOT NULL DEFAULT '',
    number_of_instances integer     NOT NULL DEFAULT 0,
    created_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX series_by_study ON series (study_instance_uid, series_number);

-- IMAGE level: one row per stored object; the object itself is in the object store,
-- sealed under the holder's data key (blob_key), exactly as received once opened.
CREATE TABLE instances (
    sop_instance_uid           text        PRIMARY KEY,
    series_instance_uid        text        NOT NULL REFERENCES series ON DELETE CASCADE,
    study_instance_uid         text        NOT NULL,
    sop_class_uid              text        NOT NULL,
    transfer_syntax_uid        text        NOT NULL,
    instance_number            integer,
    rows                       integer,
    columns                    integer,
    number_of_frames           integer     NOT NULL DEFAULT 1,
    photometric_interpretation text        NOT NULL DEFAULT '',
    size_bytes                 bigint      NOT NULL,
    sha256                     text        NOT NULL,
    blob_key                   text        NOT NULL,
    key_owner_id               uuid        NOT NULL,
    source_client_id           text        NOT NULL DEFAULT '',
    source_ae_title            text        NOT NULL DEFAULT '',
    created_at                 timestamptz NOT NULL DEFAULT now(),
    updated_at                 timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX instances_by_series ON instances (series_instance_uid, instance_number, sop_instance_uid);
CREATE INDEX instances_by_study ON instances (study_instance_uid);

-- Instances not matched to a holder, waiting for an operator (sealed under a quarantine key).
CREATE TABLE quarantined_instances (
    sop_instance_uid     text        PRIMARY KEY,
    series_instance_uid  text        NOT NULL,
    study_instance_uid   text        NOT NULL,
    sop_class_uid        text        NOT NULL,
    transfer_syntax_uid  text        NOT NULL,
    patient_id           text        NOT NULL DEFAULT '',
    issuer_of_patient_id text        NOT NULL DEFAULT '',
    patient_name         text        NOT NULL DEFAULT '',
    patient_birth_date   text        NOT NULL DEFAULT '',
    patient_sex          text        NOT NULL DEFAULT '',
    reason               text        NOT NULL CHECK (reason IN ('UNKNOWN_PATIENT', 'UNKNOWN_ISSUER', 'INVALID_INS',
                                                                'IDENTITY_MISMATCH')),
    client_id            text        NOT NULL,
    calling_ae_title     text        NOT NULL,
    size_bytes           bigint      NOT NULL,
    sha256               text        NOT NULL,
    blob_key             text        NOT NULL,
    key_owner_id         uuid        NOT NULL,
    received_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX quarantined_by_time ON quarantined_instances (received_at DESC, sop_instance_uid);
CREATE INDEX quarantined_by_study ON quarantined_instances (study_instance_uid);

-- The data keys sealing DICOM objects: one per holder, one for the quarantine; only wrapped.
CREATE TABLE data_keys (
    owner_id      uuid        PRIMARY KEY,
    owner         text        NOT NULL,
    master_key_id text        NOT NULL,
    wrapped_key   bytea       NOT NULL,
    create_time   timestamptz NOT NULL DEFAULT now(),
    rewrap_time   timestamptz
);
CREATE INDEX data_keys_by_master_key ON data_keys (master_key_id, owner_id);
