"""Carnet imaging service: radiology PACS in over DICOM, viewers out."""
