"""Contracts shared by Tributary's hub, ingest and stream services."""
