-- A holder's space as dossier sees it, following identity's lifecycle: open, archived
-- at closure (until its scheduled deletion), deleted (key shredded at once, then the
-- content and rows removed by the purge job, which sets purged_at).
CREATE TABLE spaces (
    holder_id            uuid PRIMARY KEY,
    state                text        NOT NULL CHECK (state IN ('OPEN', 'ARCHIVED', 'DELETED')),
    archived_at          timestamptz,
    scheduled_delete_at  timestamptz,
    deleted_at           timestamptz,
    purged_at            timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX spaces_to_purge ON spaces (deleted_at) WHERE state = 'DELETED' AND purged_at IS NULL;
