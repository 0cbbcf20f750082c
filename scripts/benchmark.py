"""torchport against Keras and the FLOP floor: `python scripts/benchmark.py [--quick] ...` = `torchport bench`."""
import sys

from torchport.cli import main

sys.exit(main(["bench", *sys.argv[1:]]))
