import sys

from xenpy.cli import main

sys.exit(main())
