"""Process wiring shared by the HTTP server and the command line: settings, the
database (pool, embedded server), logs, API keys, background work."""
