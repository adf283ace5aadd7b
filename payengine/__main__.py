import sys

from payengine.cli import main

sys.exit(main())
