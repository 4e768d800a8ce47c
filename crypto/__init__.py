"""Pure cryptography and rules of Spokes: no I/O, no clock, no network.

The same code runs in the server (to refuse bad input early) and in the
client (to refuse a lying server): there is one rule book, not two.
"""
