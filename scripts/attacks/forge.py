"""Same as ``python -m scripts.attacks``: ``python scripts/attacks/forge.py NAME ...``."""

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from scripts.attacks.__main__ import main

    sys.exit(main())
