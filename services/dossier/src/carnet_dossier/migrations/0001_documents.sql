-- Documents of the shared record: XDS-shaped metadata; content lives in the object store.
CREATE TABLE documents (
    document_id                  uuid PRIMARY KEY,
    logical_id                   uuid        NOT NULL,
    version                      integer     NOT NULL DEFAULT 1,
    holder_id                    uuid        NOT NULL,
    unique_id                    text        NOT NULL UNIQUE,
    type_code                    text        NOT NULL,
    class_code                   text        NOT NULL,
    format                       text        NOT NULL,
    mime_type                    text        NOT NULL,
    title                        text        NOT NULL,
    service_time                 timestamptz,
    author_rpps                  text        NOT NULL DEFAULT '',
    author_profession            text        NOT NULL DEFAULT '',
    author_organisation          text        NOT NULL DEFAULT '',
    author_name                  text        NOT NULL DEFAULT '',
    hidden_from_professionals    boolean     NOT NULL DEFAULT false,
    invisible_to_holder          boolean     NOT NULL DEFAULT false,
    invisible_to_representatives boolean     NOT NULL DEFAULT false,
    holder_own                   boolean     NOT NULL DEFAULT false,
    status                       text        NOT NULL DEFAULT 'approved',
    size_bytes                   bigint      NOT NULL,
    sha256                       text        NOT NULL,
    blob_key                     text        NOT NULL,
    accession_number             text        NOT NULL DEFAULT '',
    replaces_document_id         uuid REFERENCES documents (document_id),
    deposited_by                 jsonb       NOT NULL,
    created_at                   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT hidden_xor_invisible CHECK (NOT (hidden_from_professionals AND invisible_to_holder)),
    CONSTRAINT known_status CHECK (status IN ('approved', 'deprecated', 'archived', 'deleted'))
);
CREATE INDEX documents_holder_recent ON documents (holder_id, created_at DESC, document_id DESC);
CREATE INDEX documents_logical ON documents (logical_id, version);

-- Every read, write and decision about a holder's record, shown to the holder.
CREATE TABLE access_log (
    entry_id     bigserial PRIMARY KEY,
    holder_id    uuid        NOT NULL,
    actor        jsonb       NOT NULL,
    action       text        NOT NULL,
    item_id      text        NOT NULL DEFAULT '',
    reason       text        NOT NULL DEFAULT '',
    outcome      text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX access_log_holder ON access_log (holder_id, entry_id DESC);
