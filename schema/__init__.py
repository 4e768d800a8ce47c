"""Numbered SQL migrations, the only source of the database's shape.

This is a package only so that the ``NNN_name.sql`` files ship as package data
and ``server.migrate`` can find them through importlib.resources, installed or
not. Never edit an applied migration; add the next number.
"""
