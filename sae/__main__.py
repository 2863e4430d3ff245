import sys

from sae.cli import main

sys.exit(main())
