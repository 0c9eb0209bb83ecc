#!/usr/bin/env python3
"""Entry point of the benchmark harness: `make bench` (run), `make bench-smoke` (smoke),
`make bench-peers` (peers), `make bench-render` (render). The harness is the package
harness/ beside this file (one module per concern, see harness/__init__.py); Envoy and the
mocks are started by examples/launcher.py, shared with the demo. See README.md.
"""

import os
import sys

# examples/ holds the shared launcher; this directory (already on sys.path) the harness.
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from harness.cli import main  # noqa: E402

if __name__ == "__main__":
    main()
