"""`python -m siemgate_standins.splunk_hec`: a Splunk HEC stand-in in its own process."""

from __future__ import annotations

import sys

from siemgate_standins.splunk_hec.cli import main

sys.exit(main())
