-- The access log becomes tamper-evident: each holder's entries form a hash chain
-- (sequence from 1 without gaps; each entry commits to the previous entry's hash).
ALTER TABLE access_log
    ADD COLUMN sequence           bigint,
    ADD COLUMN actor_display_name text NOT NULL DEFAULT '',
    ADD COLUMN operation          text NOT NULL DEFAULT '',
    ADD COLUMN service            text NOT NULL DEFAULT 'dossier',
    ADD COLUMN item_kind          text NOT NULL DEFAULT '',
    ADD COLUMN item_label         text NOT NULL DEFAULT '',
    ADD COLUMN break_glass_reason text NOT NULL DEFAULT '',
    ADD COLUMN trace_id           text NOT NULL DEFAULT '',
    ADD COLUMN previous_hash      text NOT NULL DEFAULT '',
    ADD COLUMN entry_hash         text;
CREATE UNIQUE INDEX access_log_chain ON access_log (holder_id, sequence);

-- The head of each holder's chain: locked to append, so appends are serialised per
-- holder, and compared with the last entry so that a removed tail is detected.
CREATE TABLE access_log_heads (
    holder_id  uuid PRIMARY KEY,
    sequence   bigint NOT NULL DEFAULT 0,
    head_hash  text   NOT NULL DEFAULT ''
);

-- Organisations that have already accessed a holder's space (the first access by a
-- new one raises an alert).
CREATE TABLE access_log_organisations (
    holder_id       uuid        NOT NULL,
    organisation_id text        NOT NULL,
    first_entry_id  bigint      NOT NULL,
    first_seen_at   timestamptz NOT NULL,
    PRIMARY KEY (holder_id, organisation_id)
);
