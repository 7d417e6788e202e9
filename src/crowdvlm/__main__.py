"""`python -m crowdvlm ...` is the same as the `crowdvlm` console script."""

import sys

from crowdvlm.cli import main

if __name__ == "__main__":
    sys.exit(main())
