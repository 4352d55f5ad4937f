-- The print queue: letters for people without an e-mail address (the activation notice
-- of PRODUCT.md: "told by email or letter"). The body holds what is printed, secrets
-- included, until the print batch marks the letter printed and clears it.
CREATE TABLE letters (
    letter_id    uuid        PRIMARY KEY,
    delivery_id  uuid        NOT NULL UNIQUE REFERENCES deliveries ON DELETE CASCADE,
    recipient_id text        NOT NULL,
    kind         text        NOT NULL,
    subject      text        NOT NULL,
    body         text        NOT NULL,
    create_time  timestamptz NOT NULL DEFAULT now(),
    printed_time timestamptz
);
CREATE INDEX letters_to_print ON letters (create_time) WHERE printed_time IS NULL;
