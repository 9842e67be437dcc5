"""Contract suites: every implementation of a hook family runs the same tests (see each module)."""
