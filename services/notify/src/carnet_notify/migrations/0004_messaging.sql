-- Secure messaging: threads started by professionals and institutions with a holder,
-- their messages, participants and read state, encrypted attachments and the data
-- keys that seal them. Applied in schema "notify".

-- Data keys sealing attachments (AES-256-GCM), stored only wrapped by a master key of
-- CARNET_MASTER_KEY_FILE. One per holder (every attachment of a thread is sealed with
-- its holder's key, so destroying that key shreds them all) and one per uploader for
-- the attachments of a thread not started yet (resealed under the holder's key when
-- the thread starts). The wrapping is bound to owner_id.
CREATE TABLE data_keys (
    owner_id      uuid        PRIMARY KEY,
    -- "holder:<person id>" or "uploader:<role>:<subject>", for operators.
    owner         text        NOT NULL,
    master_key_id text        NOT NULL,
    wrapped_key   bytea       NOT NULL,
    create_time   timestamptz NOT NULL DEFAULT now(),
    rewrap_time   timestamptz
);
CREATE INDEX data_keys_by_master_key ON data_keys (master_key_id, owner_id);

-- A conversation with a holder, started by a professional or an institution's software.
CREATE TABLE threads (
    thread_id          uuid        PRIMARY KEY,
    holder_id          text        NOT NULL,
    subject            text        NOT NULL,
    organisation_id    text        NOT NULL DEFAULT '',
    -- The starter as an Actor (subject, role, profession_code, rpps, organisation_id, client_id).
    started_by         jsonb       NOT NULL,
    started_by_subject text        NOT NULL,
    -- Idempotency key of CreateThread, per starter.
    request_id         text,
    message_count      integer     NOT NULL DEFAULT 0,
    create_time        timestamptz NOT NULL DEFAULT clock_timestamp(),
    last_message_time  timestamptz NOT NULL,
    UNIQUE (started_by_subject, request_id)
);
CREATE INDEX threads_by_holder ON threads (holder_id, last_message_time DESC, thread_id DESC);

-- Who takes part: the starter and the holder from the start, then the representatives
-- and helpers who write for the holder.
CREATE TABLE thread_participants (
    thread_id    uuid        NOT NULL REFERENCES threads ON DELETE CASCADE,
    subject      text        NOT NULL,
    role         text        NOT NULL,
    display_name text        NOT NULL DEFAULT '',
    join_time    timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (thread_id, subject)
);
CREATE INDEX thread_participants_by_subject ON thread_participants (subject, thread_id);

-- Up to when each reader (a participant, or someone acting for the holder) has read a thread.
CREATE TABLE thread_reads (
    thread_id      uuid        NOT NULL REFERENCES threads ON DELETE CASCADE,
    reader         text        NOT NULL,
    last_read_time timestamptz NOT NULL,
    PRIMARY KEY (thread_id, reader)
);

CREATE TABLE thread_messages (
    message_id     uuid        PRIMARY KEY,
    thread_id      uuid        NOT NULL REFERENCES threads ON DELETE CASCADE,
    -- The sender as an Actor, like threads.started_by.
    sender         jsonb       NOT NULL,
    sender_subject text        NOT NULL,
    body           text        NOT NULL,
    -- Idempotency key of PostMessage (or CreateThread for the first message), per sender.
    request_id     text,
    create_time    timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (sender_subject, request_id)
);
CREATE INDEX thread_messages_in_order ON thread_messages (thread_id, create_time, message_id);

-- Attachments: uploaded first (sealed in the object store), then posted with a message.
-- thread_id is empty for an upload meant for a thread not started yet; message_id is
-- empty until the attachment is posted.
CREATE TABLE attachments (
    attachment_id     uuid        PRIMARY KEY,
    thread_id         uuid        REFERENCES threads ON DELETE CASCADE,
    message_id        uuid        REFERENCES thread_messages ON DELETE CASCADE,
    -- Its place among the attachments of its message, as posted.
    position          integer,
    uploaded_by       text        NOT NULL,
    uploaded_by_role  text        NOT NULL,
    file_name         text        NOT NULL,
    mime_type         text        NOT NULL,
    size_bytes        bigint      NOT NULL,
    sha256            text        NOT NULL,
    -- Where the sealed content is, and whose data key sealed it (data_keys.owner_id).
    blob_key          text        NOT NULL,
    key_owner_id      uuid        NOT NULL,
    -- "Save to my record": the dossier document made from it, and the request that made it.
    saved_document_id text        NOT NULL DEFAULT '',
    saved_as          jsonb,
    create_time       timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX attachments_by_message ON attachments (message_id) WHERE message_id IS NOT NULL;
CREATE INDEX attachments_unposted ON attachments (create_time) WHERE message_id IS NULL;
