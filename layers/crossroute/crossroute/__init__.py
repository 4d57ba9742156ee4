"""crossroute: one customer across WhatsApp (phone and BSUID keys) and SMS, and channel-aware replies."""

__version__ = "0.1.0"
