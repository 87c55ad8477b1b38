"""The event bus: Kafka in a cluster, an embedded durable log on one machine."""
