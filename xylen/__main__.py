import sys

from xylen.cli.main import main

sys.exit(main())
