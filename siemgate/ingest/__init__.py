"""The webhook ingest: the ASGI app that acks a batch once every event of it is durable."""
