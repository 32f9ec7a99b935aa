"""HTTP edge only: app factory, routes, auth, error translation, CLI."""
