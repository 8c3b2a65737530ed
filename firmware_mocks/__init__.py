"""firmware_mocks package."""
