"""siemgate: security-event webhook to SIEM forwarding pipeline."""

__version__ = "0.1.0"
