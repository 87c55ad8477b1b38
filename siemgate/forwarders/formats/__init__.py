"""Pure encoders from the normalized view to wire formats (syslog, CEF, LEEF)."""
