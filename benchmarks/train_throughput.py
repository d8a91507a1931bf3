"""Training images per second: aelab's trainer vs the seed's per-sample PIL/DataLoader path.

    python benchmarks/train_throughput.py [--pairs 3] [--epochs 1] [--device cpu]

Same as `aelab bench`; the code lives in aelab/apps/bench.py so the installed command has it.
"""

import sys

from aelab.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
