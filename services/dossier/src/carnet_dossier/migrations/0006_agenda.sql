-- The holder's agenda: events from the holder, professionals or apps, with reminders
-- that a job turns into AgendaReminderDueEvent (notify sends them).
CREATE TABLE agenda_events (
    agenda_event_id  uuid PRIMARY KEY,
    holder_id        uuid        NOT NULL,
    kind             text        NOT NULL,
    title            text        NOT NULL,
    description      text        NOT NULL DEFAULT '',
    start_time       timestamptz NOT NULL,
    end_time         timestamptz,
    all_day          boolean     NOT NULL DEFAULT false,
    location         text        NOT NULL DEFAULT '',
    professional_id  text        NOT NULL DEFAULT '',
    organisation_id  text        NOT NULL DEFAULT '',
    source           text        NOT NULL,
    created_by       jsonb       NOT NULL,
    request_id       text UNIQUE,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz,
    CHECK (end_time IS NULL OR end_time >= start_time)
);
CREATE INDEX agenda_by_holder ON agenda_events (holder_id, start_time, agenda_event_id);

CREATE TABLE agenda_reminders (
    agenda_event_id  uuid        NOT NULL REFERENCES agenda_events (agenda_event_id) ON DELETE CASCADE,
    position         integer     NOT NULL,
    offset_seconds   bigint      NOT NULL CHECK (offset_seconds >= 0),
    channels         text[]      NOT NULL DEFAULT '{}',
    due_at           timestamptz NOT NULL,
    sent_at          timestamptz,
    PRIMARY KEY (agenda_event_id, position)
);
CREATE INDEX agenda_reminders_due ON agenda_reminders (due_at) WHERE sent_at IS NULL;
