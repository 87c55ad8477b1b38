"""Test and benchmark support that ships with siemgate: a real broker, stand-in servers."""
