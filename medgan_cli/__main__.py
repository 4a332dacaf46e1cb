"""``python -m medgan_cli``: the same as the ``medgan`` console script."""

import sys

from medgan_cli.main import main

sys.exit(main())
