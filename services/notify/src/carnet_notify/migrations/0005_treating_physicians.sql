-- Who each holder's treating physician is, as identity last said (TreatingPhysicianChangedEvent),
-- so that a break-glass alert reaches the physician without asking identity at that moment.
-- The event that occurred last wins (events from a stream may be handled late or twice);
-- an empty professional_id means the holder has no treating physician any more.
CREATE TABLE treating_physicians (
    holder_id       text        PRIMARY KEY,
    professional_id text        NOT NULL,
    occur_time      timestamptz NOT NULL,
    update_time     timestamptz NOT NULL DEFAULT now()
);
