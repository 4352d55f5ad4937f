-- Prevention reminders sent, one per holder, programme and period: the unique key is what
-- makes "each reminder once per period" hold when two replicas run the daily job at once
-- or a run is repeated. The notification that carried the reminder is written in the same
-- transaction (its source_event_id is "prevention:<reminder_id>").
CREATE TABLE prevention_reminders (
    reminder_id     uuid        PRIMARY KEY,
    recipient_id    text        NOT NULL,
    program         text        NOT NULL,
    period          text        NOT NULL,
    detail          text        NOT NULL DEFAULT '',
    notification_id uuid        NOT NULL REFERENCES notifications (notification_id),
    send_time       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (recipient_id, program, period)
);

-- A holder's reminders, newest first (ListPreventionReminders).
CREATE INDEX prevention_reminders_by_recipient ON prevention_reminders (recipient_id, send_time DESC, reminder_id DESC);

-- The days the daily job has run to the end (a replica starting later that day does not run it again).
CREATE TABLE prevention_runs (
    run_date    date        PRIMARY KEY,
    due_count   bigint      NOT NULL,
    sent_count  bigint      NOT NULL,
    finish_time timestamptz NOT NULL DEFAULT now()
);
