"""`ferry demo`: the story of the platform, one module per chapter, each a list of steps."""
