"""The forwarders: consume the bus, normalize, deliver to sinks at least once."""
