"""Helpers shared by the test suites: isolated vhosts, databases and cache namespaces on the real services."""
