"""`python -m instaflyd` is the same as the `instaflyd` command."""

import sys

from instaflyd.cli import main

sys.exit(main())
