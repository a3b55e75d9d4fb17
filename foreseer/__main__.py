import sys

from foreseer.cli import main

sys.exit(main())
