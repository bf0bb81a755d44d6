"""``python -m guest.statefs fsck|ls|get|dump IMAGE``: the offline tool (see ``tool.py``)."""

import sys

from guest.statefs.tool import main

if __name__ == "__main__":
    sys.exit(main())
