"""The Spokes member client: an async SDK and the `spokes` command.

It trusts nothing the server says about membership: every statement it
receives is verified with crypto/ before it is shown, stored or signed over.
"""
