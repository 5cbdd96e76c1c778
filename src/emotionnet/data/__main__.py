"""``python -m emotionnet.data ROOT``: see :func:`emotionnet.data.main`."""

import sys

from .cli import main

sys.exit(main())
