"""Carnet HTTP gateway: authenticates, translates HTTP ↔ gRPC; never authorises."""
