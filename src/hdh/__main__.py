import sys

from hdh.cli import main

sys.exit(main())
