"""carnet_identity: persons and INS, accounts, credentials, professionals, software clients, tokens and JWKS."""
