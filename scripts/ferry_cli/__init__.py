"""The `ferry` command line: register, promote, demo, bench and the local platform."""
