"""Live delivery over WebSockets: the hub (hub.py) and the per-group feeds it reads (feed.py)."""
