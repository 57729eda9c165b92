import sys

from dsv3sim.cli import main

sys.exit(main())
