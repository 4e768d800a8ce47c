"""HTTP layer: thin handlers (authenticate, parse, call a service, respond), the
error middleware and request parsing helpers."""
