-- Encryption at rest: one data key per holder, stored only wrapped by a master key
-- (whose id is recorded). A shredded key leaves a tombstone: no key material, the date.
CREATE TABLE holder_keys (
    holder_id     uuid PRIMARY KEY,
    master_key_id text,
    wrapped_key   bytea,
    created_at    timestamptz NOT NULL DEFAULT now(),
    rewrapped_at  timestamptz,
    shredded_at   timestamptz,
    CONSTRAINT key_or_tombstone CHECK (
        (wrapped_key IS NULL) = (shredded_at IS NOT NULL) AND (wrapped_key IS NULL) = (master_key_id IS NULL)
    )
);
CREATE INDEX holder_keys_by_master ON holder_keys (master_key_id) WHERE wrapped_key IS NOT NULL;

-- Whether a document's blob is sealed under its holder's data key (documents stored
-- before encryption at rest are not, and are read as they are).
ALTER TABLE documents ADD COLUMN sealed boolean NOT NULL DEFAULT false;
