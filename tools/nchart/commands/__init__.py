"""One module per nchart command: each parses its options, calls the library, prints. cli.py loads them
lazily, so `nchart --help` and a render import only what they use."""
