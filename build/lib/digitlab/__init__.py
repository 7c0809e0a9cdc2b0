"""DigitLab: from raw pixels to a convolutional network on MNIST, one stage at a time."""

__version__ = "0.1.0"
