"""`python -m adapters_service`: run the worker (container entrypoint and local stack)."""

import sys

from adapters_service.worker import main

sys.exit(main())
