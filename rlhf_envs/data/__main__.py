"""``python -m rlhf_envs.data fetch hutto2014``."""

import sys

from rlhf_envs.data.commands import main

sys.exit(main())
