"""carnet_consent: who may see what — the holder's choices and the policy decision."""
