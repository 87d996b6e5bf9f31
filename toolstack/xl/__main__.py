import sys

from toolstack.xl import main

sys.exit(main())
