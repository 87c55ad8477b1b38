"""`python -m siemgate_standins.elasticsearch`: an Elasticsearch stand-in in its own process."""

from __future__ import annotations

import sys

from siemgate_standins.elasticsearch.cli import main

sys.exit(main())
