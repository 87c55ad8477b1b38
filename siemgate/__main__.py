import sys

from siemgate.cli import main

sys.exit(main())
