import sys

from xretrieve.cli import main

sys.exit(main())
