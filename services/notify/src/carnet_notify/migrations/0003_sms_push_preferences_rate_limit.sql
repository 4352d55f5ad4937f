-- SMS and push deliveries, recipients' preferences, and the per-recipient rate limit.
-- Applied in schema "notify".

-- Why a delivery is where it is when no attempt says it: the reason it was suppressed
-- (no destination, no provider configured, turned off by the recipient) or postponed
-- (over the recipient's rate limit). Empty otherwise.
ALTER TABLE deliveries ADD COLUMN state_detail text NOT NULL DEFAULT '';

-- A recipient's choice per channel; a channel without a row is enabled for every kind.
-- Security kinds are never listed (the service refuses them) and are always sent.
CREATE TABLE preferences (
    recipient_id   text        NOT NULL,
    channel        text        NOT NULL CHECK (channel IN ('EMAIL', 'SMS', 'PUSH')),
    enabled        boolean     NOT NULL,
    disabled_kinds text[]      NOT NULL DEFAULT '{}',
    update_time    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (recipient_id, channel)
);

-- Deliveries handed to a provider per recipient, channel and fixed window (rate limit).
-- Counted in the transaction that claims the delivery, so replicas never exceed the limit
-- together and a rolled-back claim counts nothing. Rows of past windows are deleted.
CREATE TABLE send_counts (
    recipient_id text        NOT NULL,
    channel      text        NOT NULL,
    window_start timestamptz NOT NULL,
    sent         integer     NOT NULL,
    PRIMARY KEY (recipient_id, channel, window_start)
);
CREATE INDEX send_counts_by_window ON send_counts (window_start);
