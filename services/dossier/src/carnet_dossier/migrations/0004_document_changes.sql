-- Changes after the deposit: version chains (replace), metadata updates, announcement,
-- archiving and deletion.
ALTER TABLE documents
    ADD COLUMN replaced_by_document_id uuid REFERENCES documents (document_id),
    ADD COLUMN updated_at              timestamptz,
    ADD COLUMN announced_at            timestamptz,
    ADD COLUMN deleted_at              timestamptz,
    ADD COLUMN delete_reason           text NOT NULL DEFAULT '';
-- At most one current version per logical document.
CREATE UNIQUE INDEX documents_one_current_version ON documents (logical_id) WHERE status = 'approved';
