-- Notification intents, their deliveries and attempts, and the in-app inbox.
-- Applied in schema "notify".

-- What to tell whom: one row per accepted intent (direct call or event).
CREATE TABLE notifications (
    notification_id uuid        PRIMARY KEY,
    request_id      text        UNIQUE,
    recipient_id    text        NOT NULL,
    kind            text        NOT NULL,
    channels        text[]      NOT NULL,
    -- Template parameters; secret ones (codes) are removed once every delivery is over.
    parameters      jsonb       NOT NULL DEFAULT '{}',
    email           text        NOT NULL DEFAULT '',
    phone           text        NOT NULL DEFAULT '',
    source_event_id text        NOT NULL DEFAULT '',
    created_by      text        NOT NULL DEFAULT '',
    create_time     timestamptz NOT NULL DEFAULT now()
);
-- At most one notification per event, recipient and kind.
CREATE UNIQUE INDEX notifications_one_per_event ON notifications (source_event_id, recipient_id, kind)
    WHERE source_event_id <> '';
CREATE INDEX notifications_by_recipient ON notifications (recipient_id, create_time DESC);

-- Sending one notification through one channel.
CREATE TABLE deliveries (
    delivery_id       uuid        PRIMARY KEY,
    notification_id   uuid        NOT NULL REFERENCES notifications ON DELETE CASCADE,
    channel           text        NOT NULL CHECK (channel IN ('EMAIL', 'SMS', 'PUSH', 'IN_APP', 'LETTER')),
    destination       text        NOT NULL DEFAULT '',
    state             text        NOT NULL
        CHECK (state IN ('PENDING', 'RETRYING', 'DELIVERED', 'FAILED', 'SUPPRESSED')),
    attempt_count     integer     NOT NULL DEFAULT 0,
    -- While PENDING or RETRYING: when the next attempt is due (moved ahead by a lease while one runs).
    next_attempt_time timestamptz,
    create_time       timestamptz NOT NULL DEFAULT now(),
    update_time       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_time) WHERE state IN ('PENDING', 'RETRYING');
CREATE INDEX deliveries_by_notification ON deliveries (notification_id);
CREATE INDEX deliveries_newest ON deliveries (create_time DESC, delivery_id DESC);

-- Every attempt, kept: an attempt without outcome was interrupted (its lease expired).
CREATE TABLE delivery_attempts (
    delivery_id    uuid        NOT NULL REFERENCES deliveries ON DELETE CASCADE,
    attempt_number integer     NOT NULL,
    start_time     timestamptz NOT NULL DEFAULT now(),
    end_time       timestamptz,
    outcome        text CHECK (outcome IN ('SUCCEEDED', 'TRANSIENT_FAILURE', 'PERMANENT_FAILURE')),
    detail         text        NOT NULL DEFAULT '',
    PRIMARY KEY (delivery_id, attempt_number)
);

-- The in-app inbox.
CREATE TABLE inbox_items (
    item_id         uuid        PRIMARY KEY,
    recipient_id    text        NOT NULL,
    kind            text        NOT NULL,
    title           text        NOT NULL,
    body            text        NOT NULL,
    parameters      jsonb       NOT NULL DEFAULT '{}',
    notification_id uuid        REFERENCES notifications ON DELETE SET NULL,
    source_event_id text        NOT NULL DEFAULT '',
    create_time     timestamptz NOT NULL DEFAULT clock_timestamp(),
    read_time       timestamptz
);
CREATE INDEX inbox_newest ON inbox_items (recipient_id, create_time DESC, item_id DESC);
CREATE INDEX inbox_unread ON inbox_items (recipient_id, create_time DESC, item_id DESC) WHERE read_time IS NULL;
