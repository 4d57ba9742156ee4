"""Provider payloads (Meta Cloud API, Twilio) read into crossroute's own types (``crossroute.inbound``).

``queued.parse`` is the entry point: one inbound-queue body in, ``Parsed`` events out.
"""
