import sys

from vlm_rationality.cli import main

sys.exit(main())
