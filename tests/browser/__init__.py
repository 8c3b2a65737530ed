"""Browser tests: the touch UI in headless Debian chromium against the whole stack."""
