"""`python -m siemgate_standins.sentinel`: a Microsoft Sentinel stand-in in its own process."""

from __future__ import annotations

import sys

from siemgate_standins.sentinel.cli import main

sys.exit(main())
