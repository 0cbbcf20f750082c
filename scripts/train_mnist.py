"""The PyTorch MNIST tutorial, ported: `python scripts/train_mnist.py [options]` = `torchport train mnist`."""
import sys

from torchport.cli import main

sys.exit(main(["train", "mnist", *sys.argv[1:]]))
