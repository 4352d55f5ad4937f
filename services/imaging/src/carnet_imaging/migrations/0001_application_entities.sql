-- DICOM application entities known to Carnet: the PACS that push to us (bound to a
-- software client of identity) and the destinations of C-MOVE.
CREATE TABLE application_entities (
    ae_title     text PRIMARY KEY CHECK (length(ae_title) BETWEEN 1 AND 16),
    client_id    text        NOT NULL,
    host         text        NOT NULL DEFAULT '',
    port         integer     CHECK (port IS NULL OR port BETWEEN 1 AND 65535),
    description  text        NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now()
);
