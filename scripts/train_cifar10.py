"""The Keras CIFAR-10 CNN, ported: `python scripts/train_cifar10.py [options]` = `torchport train cifar10`."""
import sys

from torchport.cli import main

sys.exit(main(["train", "cifar10", *sys.argv[1:]]))
