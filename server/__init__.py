"""The Spokes server: an aiohttp application over PostgreSQL that stores and relays
what members sign and encrypt, and refuses bad input early. It is untrusted by
design; clients verify everything it hands them."""
