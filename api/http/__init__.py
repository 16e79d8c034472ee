"""The HTTP API: the Litestar app, its controllers, access, problems and metrics."""
