"""Kiosk-side services that talk to central over RPC."""
