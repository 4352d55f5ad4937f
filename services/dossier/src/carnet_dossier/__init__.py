"""Carnet dossier service: the shared medical record (documents and their access log)."""
