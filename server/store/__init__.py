"""Storage: every SQL query the server runs. One public method = one transaction;
helpers that run inside a caller's transaction take the connection."""
