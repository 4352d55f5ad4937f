-- Directory (issue 3): access tokens issued to software clients, so that deleting or
-- disabling a client (or rotating its secret) can revoke them; listing indexes.

CREATE TABLE client_access_tokens (
    token_id   text PRIMARY KEY,
    client_id  text NOT NULL,
    issued_at  timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX client_access_tokens_client ON client_access_tokens (client_id, expires_at);
CREATE INDEX client_access_tokens_expiry ON client_access_tokens (expires_at);

CREATE INDEX representatives_holder ON representatives (holder_id, kind);
CREATE INDEX organisations_kind ON organisations (kind);
CREATE INDEX software_clients_scopes ON software_clients USING gin (scopes);
