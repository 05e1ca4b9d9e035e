"""Input and output: checkpoints, metrics logging, run folders and machine information."""
