import sys

from arenahub.cli import main

sys.exit(main())
